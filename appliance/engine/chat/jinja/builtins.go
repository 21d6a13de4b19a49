package jinja

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// builtinFn is a filter or method: recv is the value left of | or the dot.
type builtinFn func(c *callCtx, recv Value, args []Value, kw *kwargs) (Value, error)

// argAt returns positional argument i, or keyword name, or def.
func argAt(args []Value, kw *kwargs, i int, name string, def Value) Value {
	if v, ok := kw.get(name); ok {
		return v
	}
	if i >= 0 && i < len(args) {
		return args[i]
	}
	return def
}

func strArg(args []Value, kw *kwargs, i int, name, fn string) (string, error) {
	v := argAt(args, kw, i, name, Undefined{})
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: argument '%s' must be a string, got %s", fn, name, typeName(v))
	}
	return s, nil
}

func constant(v func() Value) builtinFn {
	return func(*callCtx, Value, []Value, *kwargs) (Value, error) { return v(), nil }
}

// Methods and filters per receiver type. Both attribute calls (x.strip())
// and filters (x|trim) use these tables, as in the reference engine.
var stringBuiltins, listBuiltins, dictBuiltins, noneBuiltins, undefinedBuiltins, numberBuiltins map[string]builtinFn

// The tables refer to functions that look filters up in them, so they are
// filled in init rather than by static initialization.
func initTables() {
	stringBuiltins = map[string]builtinFn{
		"upper":      strFn(strings.ToUpper),
		"lower":      strFn(strings.ToLower),
		"title":      strFn(titleCase),
		"capitalize": strFn(capitalize),
		"strip":      stripFn(true, true),
		"lstrip":     stripFn(true, false),
		"rstrip":     stripFn(false, true),
		"length": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return int64(utf8.RuneCountInString(r.(string))), nil
		},
		"startswith": affixFn(strings.HasPrefix, "startswith"),
		"endswith":   affixFn(strings.HasSuffix, "endswith"),
		"split":      splitFn(false),
		"rsplit":     splitFn(true),
		"replace":    replaceFn,
		"find": func(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
			sub, err := strArg(args, kw, 0, "sub", "find")
			if err != nil {
				return nil, err
			}
			i := strings.Index(r.(string), sub)
			if i < 0 {
				return int64(-1), nil
			}
			return int64(utf8.RuneCountInString(r.(string)[:i])), nil
		},
		"count": func(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
			if len(args) == 0 && kw.len() == 0 { // the count filter: length
				return int64(utf8.RuneCountInString(r.(string))), nil
			}
			sub, err := strArg(args, kw, 0, "sub", "count")
			if err != nil {
				return nil, err
			}
			return int64(strings.Count(r.(string), sub)), nil
		},
		"isdigit": strPred(unicode.IsDigit),
		"isalpha": strPred(unicode.IsLetter),
		"isspace": strPred(unicode.IsSpace),
		"isalnum": strPred(func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }),
		"islower": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			s := r.(string)
			return s != strings.ToUpper(s) && s == strings.ToLower(s), nil
		},
		"isupper": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			s := r.(string)
			return s != strings.ToLower(s) && s == strings.ToUpper(s), nil
		},
		"join":   strJoin,
		"int":    toIntFn,
		"float":  toFloatFn,
		"string": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return r, nil },
		"safe":   func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return r, nil },
		"indent": indentFn,
		"wordcount": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return int64(len(strings.Fields(r.(string)))), nil
		},
		"list": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return stringChars(r.(string)), nil },
		"reverse": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			rs := []rune(r.(string))
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			return string(rs), nil
		},
		"first": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			for _, c := range r.(string) {
				return string(c), nil
			}
			return Undefined{}, nil
		},
		"last": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			s := r.(string)
			if s == "" {
				return Undefined{}, nil
			}
			c, _ := utf8.DecodeLastRuneInString(s)
			return string(c), nil
		},
	}

	listBuiltins = map[string]builtinFn{
		"length": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return int64(len(r.(*List).Items)), nil
		},
		"count": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return int64(len(r.(*List).Items)), nil
		},
		"first": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			if l := r.(*List); len(l.Items) > 0 {
				return l.Items[0], nil
			}
			return Undefined{}, nil
		},
		"last": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			if l := r.(*List); len(l.Items) > 0 {
				return l.Items[len(l.Items)-1], nil
			}
			return Undefined{}, nil
		},
		"list": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return &List{Items: append([]Value(nil), r.(*List).Items...)}, nil
		},
		"reverse": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			l := r.(*List)
			out := &List{Tuple: l.Tuple, Items: make([]Value, len(l.Items))}
			for i, it := range l.Items {
				out.Items[len(l.Items)-1-i] = it
			}
			return out, nil
		},
		"join":       listJoin,
		"map":        mapFn,
		"select":     selectFn(false, false),
		"reject":     selectFn(true, false),
		"selectattr": selectFn(false, true),
		"rejectattr": selectFn(true, true),
		"sort":       sortFn,
		"unique":     uniqueFn,
		"sum":        sumFn,
		"min":        minMaxFn(true),
		"max":        minMaxFn(false),
		"string":     func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return repr(r), nil },
		// append returns the list, as the reference engine does, so that
		// {{ xs.append(y) }} behaves the same there and here.
		"append": func(_ *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("append takes exactly one argument")
			}
			l := r.(*List)
			if l.Tuple {
				return nil, fmt.Errorf("cannot append to a tuple")
			}
			l.Items = append(l.Items, args[0])
			return l, nil
		},
		"pop": func(_ *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
			l := r.(*List)
			i := int64(len(l.Items) - 1)
			if len(args) > 0 {
				i = toInt(args[0])
				if i < 0 {
					i += int64(len(l.Items))
				}
			}
			if i < 0 || i >= int64(len(l.Items)) || l.Tuple {
				return nil, fmt.Errorf("pop index out of range")
			}
			v := l.Items[i]
			l.Items = append(l.Items[:i], l.Items[i+1:]...)
			return v, nil
		},
		"index": func(_ *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("index takes exactly one argument")
			}
			for i, it := range r.(*List).Items {
				if equal(it, args[0]) {
					return int64(i), nil
				}
			}
			return nil, fmt.Errorf("value not in list")
		},
	}

	dictBuiltins = map[string]builtinFn{
		"get": func(_ *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
			if len(args) < 1 || len(args) > 2 {
				return nil, fmt.Errorf("get takes 1 or 2 arguments")
			}
			if v, ok := r.(*Dict).Get(args[0]); ok {
				return v, nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return None, nil
		},
		"keys": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return &List{Items: r.(*Dict).Keys()}, nil
		},
		"values": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return &List{Items: append([]Value(nil), r.(*Dict).vals...)}, nil
		},
		"items":  dictItems,
		"length": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return int64(r.(*Dict).Len()), nil },
		"count":  func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return int64(r.(*Dict).Len()), nil },
		"list": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			return &List{Items: r.(*Dict).Keys()}, nil
		},
		"string":   func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return repr(r), nil },
		"dictsort": dictSortFn,
	}

	noneBuiltins = map[string]builtinFn{
		"string": constant(func() Value { return "None" }),
		"safe":   constant(func() Value { return "None" }),
	}

	// What the reference engine answers for filters on a missing value:
	// empty results rather than errors, so optional fields can be piped.
	undefinedBuiltins = map[string]builtinFn{}

	numberBuiltins = map[string]builtinFn{
		"abs": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			switch x := r.(type) {
			case int64:
				if x < 0 {
					return -x, nil
				}
				return x, nil
			case float64:
				if x < 0 {
					return -x, nil
				}
			}
			return r, nil
		},
		"int":   toIntFn,
		"float": toFloatFn,
		"round": roundFn,
		// string of a number is its JSON form in the reference engine.
		"string": func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
			if b, ok := r.(bool); ok {
				if b {
					return "True", nil
				}
				return "False", nil
			}
			return jsonDump(r, -1, ", ", ": ", false), nil
		},
	}
}

func init() {
	initTables()
	for _, name := range []string{"capitalize", "join", "lower", "replace", "safe", "string", "strip", "title", "truncate", "upper", "trim"} {
		undefinedBuiltins[name] = constant(func() Value { return "" })
	}
	for _, name := range []string{"first", "last", "max", "min"} {
		undefinedBuiltins[name] = constant(func() Value { return Undefined{} })
	}
	for _, name := range []string{"items", "list", "map", "reject", "rejectattr", "reverse", "select", "selectattr", "sort", "unique"} {
		undefinedBuiltins[name] = constant(func() Value { return &List{} })
	}
	for _, name := range []string{"length", "count", "sum", "wordcount"} {
		undefinedBuiltins[name] = constant(func() Value { return int64(0) })
	}
	for _, name := range []string{"items", "map", "reject", "rejectattr", "select", "selectattr", "unique"} {
		noneBuiltins[name] = constant(func() Value { return &List{} })
	}
}

func tableFor(v Value) map[string]builtinFn {
	switch x := v.(type) {
	case string:
		return stringBuiltins
	case *List:
		return listBuiltins
	case *Dict:
		if x.plain {
			return nil
		}
		return dictBuiltins
	case NoneType:
		return noneBuiltins
	case Undefined:
		return undefinedBuiltins
	case int64, float64, bool:
		return numberBuiltins
	}
	return nil
}

// lookupMethod finds what obj.name resolves to when it is a builtin.
func lookupMethod(obj Value, name string) (builtinFn, bool) {
	f, ok := tableFor(obj)[name]
	return f, ok
}

// Filters accepted for every type.
var genericFilters = map[string]builtinFn{
	"default": defaultFn,
	"d":       defaultFn,
	"tojson":  tojsonFn,
}

func lookupFilter(in Value, name string) (builtinFn, bool) {
	if name == "trim" {
		name = "strip"
	}
	if f, ok := genericFilters[name]; ok {
		return f, true
	}
	if name == "string" {
		if _, ok := in.(*Func); ok {
			return nil, false
		}
	}
	return lookupMethod(in, name)
}

func stringChars(s string) *List {
	l := &List{}
	for _, c := range s {
		l.Items = append(l.Items, string(c))
	}
	return l
}

func strFn(f func(string) string) builtinFn {
	return func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) { return f(r.(string)), nil }
}

func strPred(f func(rune) bool) builtinFn {
	return func(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
		s := r.(string)
		if s == "" {
			return false, nil
		}
		for _, c := range s {
			if !f(c) {
				return false, nil
			}
		}
		return true, nil
	}
}

// titleCase is Python's str.title: a letter after a non-letter is
// uppercased, other letters lowercased.
func titleCase(s string) string {
	var b strings.Builder
	prevLetter := false
	for _, r := range s {
		if unicode.IsLetter(r) {
			if prevLetter {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToUpper(r))
			}
			prevLetter = true
		} else {
			b.WriteRune(r)
			prevLetter = false
		}
	}
	return b.String()
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + strings.ToLower(s[n:])
}

func stripFn(left, right bool) builtinFn {
	return func(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
		s := r.(string)
		chars := argAt(args, kw, 0, "chars", None)
		var cut func(rune) bool
		if isNoneLike(chars) {
			cut = unicode.IsSpace
		} else {
			set, ok := chars.(string)
			if !ok {
				return nil, fmt.Errorf("strip: chars must be a string, got %s", typeName(chars))
			}
			cut = func(c rune) bool { return strings.ContainsRune(set, c) }
		}
		if left {
			s = strings.TrimLeftFunc(s, cut)
		}
		if right {
			s = strings.TrimRightFunc(s, cut)
		}
		return s, nil
	}
}

func affixFn(f func(string, string) bool, name string) builtinFn {
	return func(_ *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("%s takes exactly one argument", name)
		}
		switch a := args[0].(type) {
		case string:
			return f(r.(string), a), nil
		case *List: // Python accepts a tuple of alternatives
			for _, it := range a.Items {
				if s, ok := it.(string); ok && f(r.(string), s) {
					return true, nil
				}
			}
			return false, nil
		}
		return nil, fmt.Errorf("%s: argument must be a string, got %s", name, typeName(args[0]))
	}
}

func splitFn(fromRight bool) builtinFn {
	return func(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
		s := r.(string)
		sep := argAt(args, kw, 0, "sep", None)
		maxsplit := int(toInt(argAt(args, kw, 1, "maxsplit", int64(-1))))
		var parts []string
		if isNoneLike(sep) {
			// Python: split on runs of whitespace, dropping empty ends.
			fields := strings.Fields(s)
			if maxsplit >= 0 && len(fields) > maxsplit+1 {
				if fromRight {
					keep := fields[len(fields)-maxsplit:]
					rest := strings.TrimRightFunc(s, unicode.IsSpace)
					for range keep {
						i := strings.LastIndexFunc(rest, unicode.IsSpace)
						rest = strings.TrimRightFunc(rest[:i], unicode.IsSpace)
					}
					fields = append([]string{strings.TrimLeftFunc(rest, unicode.IsSpace)}, keep...)
				} else {
					head := fields[:maxsplit]
					rest := strings.TrimLeftFunc(s, unicode.IsSpace)
					for range head {
						i := strings.IndexFunc(rest, unicode.IsSpace)
						rest = strings.TrimLeftFunc(rest[i:], unicode.IsSpace)
					}
					fields = append(append([]string(nil), head...), strings.TrimRightFunc(rest, unicode.IsSpace))
				}
			}
			parts = fields
		} else {
			d, ok := sep.(string)
			if !ok || d == "" {
				return nil, fmt.Errorf("split: separator must be a non-empty string")
			}
			switch {
			case maxsplit < 0:
				parts = strings.Split(s, d)
			case fromRight:
				parts = rsplitN(s, d, maxsplit)
			default:
				parts = strings.SplitN(s, d, maxsplit+1)
			}
		}
		l := &List{Items: make([]Value, len(parts))}
		for i, p := range parts {
			l.Items[i] = p
		}
		return l, nil
	}
}

func rsplitN(s, sep string, n int) []string {
	var out []string
	for n > 0 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append([]string{s[i+len(sep):]}, out...)
		s = s[:i]
		n--
	}
	return append([]string{s}, out...)
}

func replaceFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	old, err := strArg(args, kw, 0, "old", "replace")
	if err != nil {
		return nil, err
	}
	repl, err := strArg(args, kw, 1, "new", "replace")
	if err != nil {
		return nil, err
	}
	n := int(toInt(argAt(args, kw, 2, "count", int64(-1))))
	return strings.Replace(r.(string), old, repl, n), nil
}

// strJoin is both "sep".join(items) (a list argument) and the join filter
// applied to a string (its characters joined by the separator).
func strJoin(c *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	if len(args) == 1 {
		if l, ok := args[0].(*List); ok {
			parts := make([]string, len(l.Items))
			for i, it := range l.Items {
				s, err := toStr(it)
				if err != nil {
					return nil, fmt.Errorf("join: %w", err)
				}
				parts[i] = s
			}
			return strings.Join(parts, r.(string)), nil
		}
	}
	return listJoin(c, stringChars(r.(string)), args, kw)
}

func listJoin(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	sep := argAt(args, kw, 0, "d", "")
	d, ok := sep.(string)
	if !ok {
		return nil, fmt.Errorf("join: separator must be a string, got %s", typeName(sep))
	}
	attr := argAt(args, kw, 1, "attribute", None)
	parts := make([]string, 0, len(r.(*List).Items))
	for _, it := range r.(*List).Items {
		if !isNoneLike(attr) {
			it = getAttr(it, attr)
		}
		s, err := toStr(it)
		if err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, d), nil
}

// getAttr looks up an item's attribute for map/sort/selectattr: a dict key,
// a list index, or a dotted path of those.
func getAttr(item, attr Value) Value {
	if s, ok := attr.(string); ok && strings.Contains(s, ".") {
		for _, part := range strings.Split(s, ".") {
			var key Value = part
			if n, err := strconv.ParseInt(part, 10, 64); err == nil {
				key = n
			}
			item = getAttr(item, key)
		}
		return item
	}
	switch x := item.(type) {
	case *Dict:
		if v, ok := x.Get(attr); ok {
			return v
		}
	case *List:
		if isNumber(attr) {
			i := toInt(attr)
			if i < 0 {
				i += int64(len(x.Items))
			}
			if i >= 0 && i < int64(len(x.Items)) {
				return x.Items[i]
			}
		}
	}
	return Undefined{}
}

func mapFn(c *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	l := r.(*List)
	out := &List{Tuple: l.Tuple, Items: make([]Value, 0, len(l.Items))}
	if attr, ok := kw.get("attribute"); ok {
		def, hasDef := kw.get("default")
		for _, it := range l.Items {
			v := getAttr(it, attr)
			if hasDef && isUndefined(v) {
				v = def
			}
			out.Items = append(out.Items, v)
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("map needs a filter name or attribute=")
	}
	name, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("map: filter name must be a string")
	}
	for _, it := range l.Items {
		f, ok := lookupFilter(it, name)
		if !ok {
			return nil, fmt.Errorf("map: unknown filter '%s' for %s", name, typeName(it))
		}
		v, err := f(c, it, args[1:], kw)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, v)
	}
	return out, nil
}

// selectFn implements select/reject (test on the item) and
// selectattr/rejectattr (test on an attribute of the item); without a test
// the value's truthiness decides.
func selectFn(reject, byAttr bool) builtinFn {
	return func(c *callCtx, r Value, args []Value, _ *kwargs) (Value, error) {
		var attr Value
		if byAttr {
			if len(args) == 0 {
				return nil, fmt.Errorf("selectattr/rejectattr need an attribute name")
			}
			attr, args = args[0], args[1:]
		}
		out := &List{}
		for _, it := range r.(*List).Items {
			v := it
			if byAttr {
				v = getAttr(it, attr)
			}
			var keep bool
			if len(args) == 0 {
				keep = truthy(v)
			} else {
				name, ok := args[0].(string)
				if !ok {
					return nil, fmt.Errorf("select: test name must be a string")
				}
				res, err := runTest(c, name, v, args[1:])
				if err != nil {
					return nil, err
				}
				keep = res
			}
			if keep != reject {
				out.Items = append(out.Items, it)
			}
		}
		return out, nil
	}
}

// less orders values for sort/min/max/dictsort.
func less(a, b Value, caseSensitive bool) (bool, error) {
	if isNumber(a) && isNumber(b) {
		return toFloat(a) < toFloat(b), nil
	}
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		if !caseSensitive {
			as, bs = strings.ToLower(as), strings.ToLower(bs)
		}
		return as < bs, nil
	}
	return false, fmt.Errorf("cannot compare %s and %s", typeName(a), typeName(b))
}

func sortFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	reverse := truthy(argAt(args, kw, 0, "reverse", false))
	caseSensitive := truthy(argAt(args, kw, 1, "case_sensitive", false))
	attr := argAt(args, kw, 2, "attribute", None)
	l := r.(*List)
	items := append([]Value(nil), l.Items...)
	var err error
	key := func(v Value) Value {
		if isNoneLike(attr) {
			return v
		}
		return getAttr(v, attr)
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := key(items[i]), key(items[j])
		if reverse {
			a, b = b, a
		}
		lt, e := less(a, b, caseSensitive)
		if e != nil && err == nil {
			err = e
		}
		return lt
	})
	if err != nil {
		return nil, fmt.Errorf("sort: %w", err)
	}
	return &List{Items: items}, nil
}

func uniqueFn(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
	out := &List{}
	for _, it := range r.(*List).Items {
		dup := false
		for _, seen := range out.Items {
			if equal(it, seen) {
				dup = true
				break
			}
		}
		if !dup {
			out.Items = append(out.Items, it)
		}
	}
	return out, nil
}

func sumFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	attr := argAt(args, kw, 0, "attribute", None)
	total := argAt(args, kw, 1, "start", int64(0))
	for _, it := range r.(*List).Items {
		if !isNoneLike(attr) {
			it = getAttr(it, attr)
		}
		v, err := binaryOp("+", total, it)
		if err != nil {
			return nil, fmt.Errorf("sum: %w", err)
		}
		total = v
	}
	return total, nil
}

func minMaxFn(isMin bool) builtinFn {
	return func(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
		caseSensitive := truthy(argAt(args, kw, 0, "case_sensitive", false))
		attr := argAt(args, kw, 1, "attribute", None)
		var best Value = Undefined{}
		var bestKey Value
		for _, it := range r.(*List).Items {
			k := it
			if !isNoneLike(attr) {
				k = getAttr(it, attr)
			}
			if isUndefined(best) {
				best, bestKey = it, k
				continue
			}
			a, b := k, bestKey
			if !isMin {
				a, b = b, a
			}
			lt, err := less(a, b, caseSensitive)
			if err != nil {
				return nil, err
			}
			if lt {
				best, bestKey = it, k
			}
		}
		return best, nil
	}
}

func dictItems(_ *callCtx, r Value, _ []Value, _ *kwargs) (Value, error) {
	d := r.(*Dict)
	out := &List{Items: make([]Value, d.Len())}
	for i, k := range d.keys {
		out.Items[i] = &List{Items: []Value{k, d.vals[i]}, Tuple: true}
	}
	return out, nil
}

// dictSortFn returns a sorted copy of the dict (the reference engine keeps a
// dict; iterating it with "for k, v" gives the same pairs as Jinja's list).
func dictSortFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	caseSensitive := truthy(argAt(args, kw, 0, "case_sensitive", false))
	by := argAt(args, kw, 1, "by", "key")
	reverse := truthy(argAt(args, kw, 2, "reverse", false))
	d := r.(*Dict)
	idx := make([]int, d.Len())
	for i := range idx {
		idx[i] = i
	}
	var err error
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := d.keys[idx[i]], d.keys[idx[j]]
		if by == "value" {
			a, b = d.vals[idx[i]], d.vals[idx[j]]
		}
		if reverse {
			a, b = b, a
		}
		lt, e := less(a, b, caseSensitive)
		if e != nil && err == nil {
			err = e
		}
		return lt
	})
	if err != nil {
		return nil, fmt.Errorf("dictsort: %w", err)
	}
	out := NewDict()
	for _, i := range idx {
		_ = out.SetKey(d.keys[i], d.vals[i])
	}
	return out, nil
}

func toIntFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	def := argAt(args, kw, 0, "default", int64(0))
	switch x := r.(type) {
	case int64, float64, bool:
		return toInt(x), nil
	case string:
		base := int(toInt(argAt(args, kw, 1, "base", int64(10))))
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, base, 64); err == nil {
			return n, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && base == 10 {
			return toInt(f), nil
		}
	}
	return def, nil
}

func toFloatFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	def := argAt(args, kw, 0, "default", 0.0)
	switch x := r.(type) {
	case int64, float64, bool:
		return toFloat(x), nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return f, nil
		}
	}
	return def, nil
}

func roundFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	prec := toInt(argAt(args, kw, 0, "precision", int64(0)))
	method := argAt(args, kw, 1, "method", "common")
	f := toFloat(r)
	p := 1.0
	for i := int64(0); i < prec; i++ {
		p *= 10
	}
	x := f * p
	switch method {
	case "floor":
		x = floor(x)
	case "ceil":
		x = -floor(-x)
	default:
		if x < 0 {
			x = -floor(-x + 0.5)
		} else {
			x = floor(x + 0.5)
		}
	}
	return x / p, nil
}

func floor(x float64) float64 {
	t := float64(int64(x))
	if t > x {
		t--
	}
	return t
}

// indentFn is Jinja's indent: every line but the first (unless first=True)
// gets width spaces; blank lines only with blank=True.
func indentFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	w := argAt(args, kw, 0, "width", int64(4))
	var pad string
	switch x := w.(type) {
	case string:
		pad = x
	default:
		if !isNumber(x) {
			return nil, fmt.Errorf("indent: width must be a number or string")
		}
		pad = strings.Repeat(" ", int(max(toInt(x), 0)))
	}
	first := truthy(argAt(args, kw, 1, "first", false))
	blank := truthy(argAt(args, kw, 2, "blank", false))
	lines := strings.Split(r.(string), "\n")
	for i, ln := range lines {
		if i == 0 && !first {
			continue
		}
		if ln == "" && !blank {
			continue
		}
		lines[i] = pad + ln
	}
	return strings.Join(lines, "\n"), nil
}

// defaultFn: the reference engine replaces none as well as undefined (Jinja
// only undefined); with boolean=true any falsy value is replaced.
func defaultFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	def := argAt(args, kw, 0, "default_value", "")
	if truthy(argAt(args, kw, 1, "boolean", false)) {
		if !truthy(r) {
			return def, nil
		}
		return r, nil
	}
	if isNoneLike(r) {
		return def, nil
	}
	return r, nil
}

func tojsonFn(_ *callCtx, r Value, args []Value, kw *kwargs) (Value, error) {
	indent := -1
	if v := argAt(args, kw, 0, "indent", None); !isNoneLike(v) {
		if !isNumber(v) {
			return nil, fmt.Errorf("tojson: indent must be an integer")
		}
		indent = int(toInt(v))
	}
	if truthy(argAt(nil, kw, -1, "ensure_ascii", false)) {
		return nil, fmt.Errorf("tojson: ensure_ascii=true is not supported")
	}
	itemSep, keySep := ", ", ": "
	if indent >= 0 {
		itemSep = ","
	}
	if v, ok := kw.get("separators"); ok && !isNoneLike(v) {
		l, ok := v.(*List)
		if !ok || len(l.Items) != 2 {
			return nil, fmt.Errorf("tojson: separators must be a pair of strings")
		}
		a, aok := l.Items[0].(string)
		b, bok := l.Items[1].(string)
		if !aok || !bok {
			return nil, fmt.Errorf("tojson: separators must be a pair of strings")
		}
		itemSep, keySep = a, b
	}
	sortKeys := truthy(argAt(nil, kw, -1, "sort_keys", false))
	return jsonDump(r, indent, itemSep, keySep, sortKeys), nil
}

// Tests ("x is name(args)").
func runTest(c *callCtx, name string, v Value, args []Value) (bool, error) {
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("test '%s' takes %d argument(s), got %d", name, n, len(args))
		}
		return nil
	}
	cmp := func(op string) (bool, error) {
		if err := need(1); err != nil {
			return false, err
		}
		res, err := binaryOp(op, v, args[0])
		if err != nil {
			return false, err
		}
		return res.(bool), nil
	}
	switch name {
	case "defined":
		return !isUndefined(v), nil
	case "undefined":
		return isUndefined(v), nil
	case "none":
		// The reference engine answers true for undefined too; templates
		// rely on "x is none" for absent optional fields.
		return isNoneLike(v), nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "number":
		switch v.(type) {
		case int64, float64:
			return true, nil
		}
		return false, nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true":
		b, ok := v.(bool)
		return ok && b, nil
	case "false":
		b, ok := v.(bool)
		return ok && !b, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "iterable", "sequence":
		switch v.(type) {
		case *List, string, *Dict, Undefined:
			return true, nil
		}
		return false, nil
	case "callable":
		_, ok := v.(*Func)
		return ok, nil
	case "odd", "even":
		n, ok := v.(int64)
		if !ok {
			return false, fmt.Errorf("test '%s' needs an integer, got %s", name, typeName(v))
		}
		return (n%2 != 0) == (name == "odd"), nil
	case "divisibleby":
		if err := need(1); err != nil {
			return false, err
		}
		d := toInt(args[0])
		if d == 0 {
			return false, fmt.Errorf("divisibleby 0")
		}
		return toInt(v)%d == 0, nil
	case "lower", "upper":
		s, ok := v.(string)
		if !ok {
			return false, nil
		}
		if name == "lower" {
			return s == strings.ToLower(s), nil
		}
		return s == strings.ToUpper(s), nil
	case "eq", "equalto", "==":
		return cmp("==")
	case "ne", "!=":
		return cmp("!=")
	case "gt", "greaterthan", ">":
		return cmp(">")
	case "ge", ">=":
		return cmp(">=")
	case "lt", "lessthan", "<":
		return cmp("<")
	case "le", "<=":
		return cmp("<=")
	case "in":
		if err := need(1); err != nil {
			return false, err
		}
		return contains(args[0], v)
	case "sameas":
		if err := need(1); err != nil {
			return false, err
		}
		switch v.(type) {
		case *List, *Dict, *Func:
			return v == args[0], nil
		}
		return equal(v, args[0]) && typeName(v) == typeName(args[0]), nil
	}
	return false, fmt.Errorf("unknown test '%s'", name)
}

// Global functions.
var globalFuncs map[string]func(c *callCtx, args []Value, kw *kwargs) (Value, error)

func init() {
	globalFuncs = map[string]func(c *callCtx, args []Value, kw *kwargs) (Value, error){
		"raise_exception": func(_ *callCtx, args []Value, _ *kwargs) (Value, error) {
			msg := ""
			if len(args) > 0 {
				s, err := toStr(args[0])
				if err != nil {
					return nil, err
				}
				msg = s
			}
			return nil, &raised{msg: msg}
		},
		"namespace": func(_ *callCtx, args []Value, kw *kwargs) (Value, error) {
			d := NewDict()
			for _, a := range args {
				src, ok := a.(*Dict)
				if !ok {
					return nil, fmt.Errorf("namespace() takes keyword arguments or a dict")
				}
				for i, k := range src.keys {
					_ = d.SetKey(k, src.vals[i])
				}
			}
			if kw != nil {
				for i, n := range kw.names {
					d.Set(n, kw.vals[i])
				}
			}
			return d, nil
		},
		"dict": func(_ *callCtx, args []Value, kw *kwargs) (Value, error) {
			d := NewDict()
			if len(args) > 0 {
				src, ok := args[0].(*Dict)
				if !ok || len(args) > 1 {
					return nil, fmt.Errorf("dict() takes keyword arguments or one dict")
				}
				d = src.copy()
			}
			if kw != nil {
				for i, n := range kw.names {
					d.Set(n, kw.vals[i])
				}
			}
			return d, nil
		},
		"strftime_now": func(c *callCtx, args []Value, _ *kwargs) (Value, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("strftime_now takes one format string")
			}
			f, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("strftime_now: format must be a string")
			}
			return strftime(c.e.now, f), nil
		},
		"range": func(_ *callCtx, args []Value, _ *kwargs) (Value, error) {
			if len(args) < 1 || len(args) > 3 {
				return nil, fmt.Errorf("range takes 1 to 3 arguments")
			}
			for _, a := range args {
				if _, ok := a.(int64); !ok {
					return nil, fmt.Errorf("range arguments must be integers, got %s", typeName(a))
				}
			}
			start, stop, step := int64(0), toInt(args[0]), int64(1)
			if len(args) >= 2 {
				start, stop = toInt(args[0]), toInt(args[1])
			}
			if len(args) == 3 {
				step = toInt(args[2])
			}
			if step == 0 {
				return nil, fmt.Errorf("range step must not be zero")
			}
			out := &List{}
			for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
				out.Items = append(out.Items, i)
				if len(out.Items) > 1_000_000 {
					return nil, fmt.Errorf("range too large")
				}
			}
			return out, nil
		},
		"tojson": func(c *callCtx, args []Value, kw *kwargs) (Value, error) {
			if len(args) < 1 {
				return nil, fmt.Errorf("tojson needs a value")
			}
			return tojsonFn(c, args[0], args[1:], kw)
		},
	}
}
