package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Template is a parsed template. It is immutable and safe for concurrent
// Render calls.
type Template struct {
	src  string
	body []node
}

// Parse parses template source. Errors are *Error with Kind SyntaxError and
// the line/column of the offending token.
func Parse(source string) (*Template, error) {
	src := normalize(source)
	body, err := parse(src)
	if err != nil {
		return nil, err
	}
	return &Template{src: src, body: body}, nil
}

// Render evaluates the template with the given global variables; now is
// what strftime_now formats. Errors are *Error.
func (t *Template) Render(vars map[string]Value, now time.Time) (string, error) {
	return t.render(&evaluator{src: t.src, now: now}, vars)
}

// UsesValue renders with vars and reports whether the template ever gets
// hold of the string marker (non-empty, placed somewhere in vars) through a
// variable or a member access, whether or not the render succeeds.
// llama.cpp probes templates this way (its value "used" statistics) to
// learn, for example, whether a system message's content is used at all.
func (t *Template) UsesValue(vars map[string]Value, marker string, now time.Time) bool {
	e := &evaluator{src: t.src, now: now, probe: marker}
	_, _ = t.render(e, vars)
	return e.probeHit
}

func (t *Template) render(e *evaluator, vars map[string]Value) (out string, err error) {
	// A panic here is a bug in a builtin; a server must not die of it on a
	// user-supplied template, so it becomes an error naming the cause.
	defer func() {
		if r := recover(); r != nil {
			out, err = "", &Error{Kind: RuntimeError, Line: 1, Column: 1, Message: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	root := newScope(nil)
	// As in the reference engine these are ordinary variables, so both the
	// Python spelling and the JSON spelling work.
	for name, v := range map[string]Value{"true": true, "True": true, "false": false, "False": false, "none": None, "None": None} {
		root.vars[name] = v
	}
	for k, v := range vars {
		root.vars[k] = v
	}
	var b strings.Builder
	if err := e.exec(t.body, root, &b); err != nil {
		switch err {
		case errBreak, errContinue:
			return "", &Error{Kind: SyntaxError, Line: 1, Column: 1, Message: "break/continue outside a loop"}
		}
		return "", err
	}
	return b.String(), nil
}

type scope struct {
	vars   map[string]Value
	parent *scope
}

func newScope(parent *scope) *scope { return &scope{vars: map[string]Value{}, parent: parent} }

func (s *scope) lookup(name string) (Value, bool) {
	for c := s; c != nil; c = c.parent {
		if v, ok := c.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type evaluator struct {
	src   string
	now   time.Time
	depth int
	// probe, when not empty, is a marker string; probeHit records whether a
	// variable lookup or member access produced it (see UsesValue).
	probe    string
	probeHit bool
}

// callCtx gives builtins access to the evaluator (for tests used by
// select/reject and for the render time).
type callCtx struct{ e *evaluator }

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

const maxDepth = 200

// wrap attaches the position of n to an error that has none yet, so the
// innermost failing expression names the location.
func (e *evaluator) wrap(n node, err error) error {
	if err == nil || err == errBreak || err == errContinue {
		return err
	}
	var je *Error
	if errors.As(err, &je) {
		return err
	}
	l, c := lineCol(e.src, n.position())
	var r *raised
	if errors.As(err, &r) {
		return &Error{Kind: RaisedError, Line: l, Column: c, Message: r.msg}
	}
	return &Error{Kind: RuntimeError, Line: l, Column: c, Message: err.Error()}
}

func (e *evaluator) exec(nodes []node, s *scope, out *strings.Builder) error {
	for _, n := range nodes {
		if err := e.execNode(n, s, out); err != nil {
			return e.wrap(n, err)
		}
	}
	return nil
}

func (e *evaluator) execNode(n node, s *scope, out *strings.Builder) error {
	switch x := n.(type) {
	case *textNode:
		out.WriteString(x.text)
	case *commentNode, *noopNode:
	case *outputNode:
		v, err := e.eval(x.expr, s)
		if err != nil {
			return err
		}
		writeOutput(out, v)
	case *ifNode:
		v, err := e.eval(x.test, s)
		if err != nil {
			return err
		}
		if truthy(v) {
			return e.exec(x.body, s, out)
		}
		return e.exec(x.else_, s, out)
	case *forNode:
		return e.execFor(x, s, out)
	case *setNode:
		return e.execSet(x, s)
	case *macroNode:
		s.vars[x.name] = e.makeMacro(x, s)
	case *filterBlockNode:
		var body strings.Builder
		if err := e.exec(x.body, s, &body); err != nil {
			return err
		}
		v, err := e.applyFilter(x.filter, body.String(), s)
		if err != nil {
			return err
		}
		writeOutput(out, v)
	case *breakNode:
		return errBreak
	case *continueNode:
		return errContinue
	default:
		v, err := e.eval(n, s)
		if err != nil {
			return err
		}
		writeOutput(out, v)
	}
	return nil
}

func (e *evaluator) execFor(x *forNode, s *scope, out *strings.Builder) error {
	iter, err := e.eval(x.iter, s)
	if err != nil {
		return err
	}
	var items []Value
	switch it := iter.(type) {
	case Undefined:
		// a missing list loops zero times, as in the reference engine
	case *List:
		items = append(items, it.Items...)
	case *Dict:
		for i, k := range it.keys {
			items = append(items, &List{Items: []Value{k, it.vals[i]}, Tuple: true})
		}
	case string:
		for _, r := range it {
			items = append(items, string(r))
		}
	default:
		return fmt.Errorf("cannot loop over %s", typeName(iter))
	}
	_, overDict := iter.(*Dict)

	// bind assigns the loop variable(s) for one item.
	bind := func(sc *scope, item Value) error {
		switch t := x.target.(type) {
		case *identNode:
			if overDict {
				item = item.(*List).Items[0]
			}
			sc.vars[t.name] = item
		case *tupleNode:
			l, ok := item.(*List)
			if !ok {
				return fmt.Errorf("cannot unpack %s into %d loop variables", typeName(item), len(t.items))
			}
			if len(l.Items) != len(t.items) {
				return fmt.Errorf("cannot unpack %d values into %d loop variables", len(l.Items), len(t.items))
			}
			for i, id := range t.items {
				sc.vars[id.(*identNode).name] = l.Items[i]
			}
		}
		return nil
	}

	if x.filter != nil {
		var kept []Value
		for _, item := range items {
			tmp := newScope(s)
			if err := bind(tmp, item); err != nil {
				return err
			}
			ok, err := e.eval(x.filter, tmp)
			if err != nil {
				return err
			}
			if truthy(ok) {
				kept = append(kept, item)
			}
		}
		items = kept
	}

	if len(items) == 0 {
		return e.exec(x.elseBody, s, out)
	}
	// One scope for the whole loop: a {% set %} in the body is visible in
	// later iterations but not after the loop.
	ls := newScope(s)
	n := len(items)
	for i, item := range items {
		loop := NewDict()
		loop.plain = true
		loop.Set("index", int64(i+1))
		loop.Set("index0", int64(i))
		loop.Set("revindex", int64(n-i))
		loop.Set("revindex0", int64(n-i-1))
		loop.Set("first", i == 0)
		loop.Set("last", i == n-1)
		loop.Set("length", int64(n))
		if i > 0 {
			loop.Set("previtem", items[i-1])
		} else {
			loop.Set("previtem", Undefined{Name: "previtem"})
		}
		if i < n-1 {
			loop.Set("nextitem", items[i+1])
		} else {
			loop.Set("nextitem", Undefined{Name: "nextitem"})
		}
		idx := i
		loop.Set("cycle", &Func{Name: "loop.cycle", Fn: func(_ *callCtx, args []Value, _ *kwargs) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("loop.cycle needs at least one argument")
			}
			return args[idx%len(args)], nil
		}})
		ls.vars["loop"] = loop
		if err := bind(ls, item); err != nil {
			return err
		}
		err := e.exec(x.body, ls, out)
		if err == errBreak {
			break
		}
		if err != nil && err != errContinue {
			return err
		}
	}
	return nil
}

func (e *evaluator) execSet(x *setNode, s *scope) error {
	var v Value
	if x.value != nil {
		var err error
		if v, err = e.eval(x.value, s); err != nil {
			return err
		}
	} else {
		var body strings.Builder
		if err := e.exec(x.body, s, &body); err != nil {
			return err
		}
		v = body.String()
	}
	switch t := x.target.(type) {
	case *identNode:
		s.vars[t.name] = v
	case *tupleNode:
		l, ok := v.(*List)
		if !ok {
			return fmt.Errorf("cannot unpack %s in set", typeName(v))
		}
		if len(l.Items) != len(t.items) {
			return fmt.Errorf("cannot unpack %d values into %d names", len(l.Items), len(t.items))
		}
		for i, id := range t.items {
			s.vars[id.(*identNode).name] = l.Items[i]
		}
	case *memberNode:
		obj, err := e.eval(t.obj, s)
		if err != nil {
			return err
		}
		d, ok := obj.(*Dict)
		if !ok {
			return fmt.Errorf("cannot set attribute '%s' on %s", t.prop.(*identNode).name, typeName(obj))
		}
		d.Set(t.prop.(*identNode).name, v)
	}
	return nil
}

func (e *evaluator) makeMacro(m *macroNode, defScope *scope) *Func {
	return &Func{Name: m.name, Fn: func(c *callCtx, args []Value, kw *kwargs) (Value, error) {
		if len(args) > len(m.params) {
			return nil, fmt.Errorf("macro '%s' takes %d arguments, got %d", m.name, len(m.params), len(args))
		}
		ms := newScope(defScope)
		for i, p := range m.params {
			if i < len(args) {
				ms.vars[p.name] = args[i]
				continue
			}
			if v, ok := kw.get(p.name); ok {
				ms.vars[p.name] = v
				continue
			}
			if p.def != nil {
				v, err := e.eval(p.def, defScope)
				if err != nil {
					return nil, err
				}
				ms.vars[p.name] = v
				continue
			}
			ms.vars[p.name] = Undefined{Name: p.name}
		}
		if kw != nil {
			for _, name := range kw.names {
				known := false
				for _, p := range m.params {
					known = known || p.name == name
				}
				if !known {
					return nil, fmt.Errorf("macro '%s' has no parameter '%s'", m.name, name)
				}
			}
		}
		if e.depth >= maxDepth {
			return nil, fmt.Errorf("macro '%s': recursion deeper than %d", m.name, maxDepth)
		}
		e.depth++
		defer func() { e.depth-- }()
		var out strings.Builder
		if err := e.exec(m.body, ms, &out); err != nil {
			return nil, err
		}
		return out.String(), nil
	}}
}

func (e *evaluator) eval(n node, s *scope) (Value, error) {
	v, err := e.evalNode(n, s)
	if err != nil {
		return nil, e.wrap(n, err)
	}
	if e.probe != "" {
		switch n.(type) {
		case *identNode, *memberNode:
			if str, ok := v.(string); ok && str == e.probe {
				e.probeHit = true
			}
		}
	}
	return v, nil
}

func (e *evaluator) evalNode(n node, s *scope) (Value, error) {
	switch x := n.(type) {
	case *constNode:
		return x.val, nil
	case *identNode:
		if v, ok := s.lookup(x.name); ok {
			return v, nil
		}
		if f, ok := globalFuncs[x.name]; ok {
			return &Func{Name: x.name, Fn: f}, nil
		}
		return Undefined{Name: x.name}, nil
	case *listNode:
		l := &List{Items: make([]Value, 0, len(x.items))}
		for _, it := range x.items {
			v, err := e.eval(it, s)
			if err != nil {
				return nil, err
			}
			l.Items = append(l.Items, v)
		}
		return l, nil
	case *tupleNode:
		l := &List{Tuple: true}
		for _, it := range x.items {
			v, err := e.eval(it, s)
			if err != nil {
				return nil, err
			}
			l.Items = append(l.Items, v)
		}
		return l, nil
	case *dictNode:
		d := NewDict()
		for i := range x.keys {
			k, err := e.eval(x.keys[i], s)
			if err != nil {
				return nil, err
			}
			v, err := e.eval(x.vals[i], s)
			if err != nil {
				return nil, err
			}
			if err := d.SetKey(k, v); err != nil {
				return nil, err
			}
		}
		return d, nil
	case *memberNode:
		return e.evalMember(x, s)
	case *callNode:
		return e.evalCall(x, s)
	case *filterNode:
		var in Value
		if x.operand != nil {
			var err error
			if in, err = e.eval(x.operand, s); err != nil {
				return nil, err
			}
		}
		return e.applyFilter(x, in, s)
	case *testNode:
		v, err := e.eval(x.operand, s)
		if err != nil {
			return nil, err
		}
		args, kw, err := e.evalArgs(x.args, s)
		if err != nil {
			return nil, err
		}
		if kw.len() > 0 {
			return nil, fmt.Errorf("test '%s' takes no keyword arguments", x.name)
		}
		ok, err := runTest(&callCtx{e}, x.name, v, args)
		if err != nil {
			return nil, err
		}
		return ok != x.negate, nil
	case *binaryNode:
		l, err := e.eval(x.left, s)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "and":
			if !truthy(l) {
				return l, nil
			}
			return e.eval(x.right, s)
		case "or":
			if truthy(l) {
				return l, nil
			}
			return e.eval(x.right, s)
		}
		r, err := e.eval(x.right, s)
		if err != nil {
			return nil, err
		}
		return binaryOp(x.op, l, r)
	case *unaryNode:
		v, err := e.eval(x.operand, s)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "not":
			return !truthy(v), nil
		case "-":
			switch y := v.(type) {
			case int64:
				return -y, nil
			case float64:
				return -y, nil
			}
			return nil, fmt.Errorf("unary '-' needs a number, got %s", typeName(v))
		case "+":
			if isNumber(v) {
				return v, nil
			}
			return nil, fmt.Errorf("unary '+' needs a number, got %s", typeName(v))
		}
	case *ternaryNode:
		c, err := e.eval(x.cond, s)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return e.eval(x.yes, s)
		}
		return e.eval(x.no, s)
	case *selectNode:
		c, err := e.eval(x.cond, s)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return e.eval(x.val, s)
		}
		return Undefined{}, nil
	case *sliceNode:
		return nil, fmt.Errorf("a slice is only allowed inside [ ]")
	}
	return nil, fmt.Errorf("cannot evaluate %T", n)
}

func (e *evaluator) evalArgs(in []arg, s *scope) ([]Value, *kwargs, error) {
	var args []Value
	var kw *kwargs
	for _, a := range in {
		v, err := e.eval(a.val, s)
		if err != nil {
			return nil, nil, err
		}
		if a.name == "" {
			if kw != nil {
				return nil, nil, fmt.Errorf("positional argument after keyword argument")
			}
			args = append(args, v)
			continue
		}
		if kw == nil {
			kw = &kwargs{}
		}
		kw.names = append(kw.names, a.name)
		kw.vals = append(kw.vals, v)
	}
	return args, kw, nil
}

func exprName(n node) string {
	switch x := n.(type) {
	case *identNode:
		return x.name
	case *memberNode:
		if x.dot {
			return exprName(x.obj) + "." + x.prop.(*identNode).name
		}
		return exprName(x.obj) + "[...]"
	case *callNode:
		return exprName(x.callee) + "(...)"
	}
	return "expression"
}

func (e *evaluator) evalCall(x *callNode, s *scope) (Value, error) {
	args, kw, err := e.evalArgs(x.args, s)
	if err != nil {
		return nil, err
	}
	callee, err := e.eval(x.callee, s)
	if err != nil {
		return nil, err
	}
	f, ok := callee.(*Func)
	if !ok {
		return nil, fmt.Errorf("'%s' is not callable (it is %s)", exprName(x.callee), typeName(callee))
	}
	return f.Fn(&callCtx{e}, args, kw)
}

func (e *evaluator) applyFilter(f *filterNode, in Value, s *scope) (Value, error) {
	args, kw, err := e.evalArgs(f.args, s)
	if err != nil {
		return nil, err
	}
	fn, ok := lookupFilter(in, f.name)
	if !ok {
		return nil, fmt.Errorf("unknown filter '%s' for %s", f.name, typeName(in))
	}
	return fn(&callCtx{e}, in, args, kw)
}

func (e *evaluator) evalMember(x *memberNode, s *scope) (Value, error) {
	obj, err := e.eval(x.obj, s)
	if err != nil {
		return nil, err
	}
	if x.dot {
		name := x.prop.(*identNode).name
		// Methods win over keys on attribute access (d.items is the method,
		// d['items'] the value), as in Jinja and the reference engine.
		if m, ok := lookupMethod(obj, name); ok {
			return bind(name, obj, m), nil
		}
		if d, ok := obj.(*Dict); ok {
			if v, ok := d.Get(name); ok {
				return v, nil
			}
		}
		return Undefined{Name: name}, nil
	}
	if sl, ok := x.prop.(*sliceNode); ok {
		var bounds [3]Value
		for i, b := range []node{sl.start, sl.stop, sl.step} {
			bounds[i] = None
			if b != nil {
				if bounds[i], err = e.eval(b, s); err != nil {
					return nil, err
				}
			}
		}
		return sliceValue(obj, bounds[0], bounds[1], bounds[2])
	}
	key, err := e.eval(x.prop, s)
	if err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case Undefined:
		return Undefined{}, nil
	case *Dict:
		if v, ok := o.Get(key); ok {
			return v, nil
		}
	case *List:
		if isNumber(key) {
			if _, isFloat := key.(float64); isFloat {
				return nil, fmt.Errorf("list index must be an integer, got float")
			}
			i := toInt(key)
			if i < 0 {
				i += int64(len(o.Items))
			}
			if i < 0 || i >= int64(len(o.Items)) {
				return Undefined{Name: fmt.Sprintf("index %d", toInt(key))}, nil
			}
			return o.Items[i], nil
		}
	case string:
		if isNumber(key) {
			r := []rune(o)
			i := toInt(key)
			if i < 0 {
				i += int64(len(r))
			}
			if i < 0 || i >= int64(len(r)) {
				return Undefined{}, nil
			}
			return string(r[i]), nil
		}
	}
	if name, ok := key.(string); ok {
		if m, ok := lookupMethod(obj, name); ok {
			return bind(name, obj, m), nil
		}
		return Undefined{Name: name}, nil
	}
	if _, ok := obj.(*Dict); ok {
		return Undefined{}, nil
	}
	return nil, fmt.Errorf("cannot subscript %s with %s", typeName(obj), typeName(key))
}

func bind(name string, recv Value, m builtinFn) *Func {
	return &Func{Name: name, Fn: func(c *callCtx, args []Value, kw *kwargs) (Value, error) {
		return m(c, recv, args, kw)
	}}
}

// sliceValue implements Python slicing for lists, tuples and strings.
func sliceValue(obj, start, stop, step Value) (Value, error) {
	var n int
	var runes []rune
	switch o := obj.(type) {
	case *List:
		n = len(o.Items)
	case string:
		runes = []rune(o)
		n = len(runes)
	case Undefined:
		return Undefined{}, nil
	default:
		return nil, fmt.Errorf("cannot slice %s", typeName(obj))
	}
	st := int64(1)
	if !isNoneLike(step) {
		if !isNumber(step) {
			return nil, fmt.Errorf("slice step must be an integer")
		}
		st = toInt(step)
		if st == 0 {
			return nil, fmt.Errorf("slice step cannot be zero")
		}
	}
	norm := func(v Value, def int64) (int64, error) {
		if isNoneLike(v) {
			return def, nil
		}
		if !isNumber(v) {
			return 0, fmt.Errorf("slice indices must be integers, got %s", typeName(v))
		}
		i := toInt(v)
		if i < 0 {
			i += int64(n)
			if i < 0 {
				if st < 0 {
					return -1, nil
				}
				return 0, nil
			}
		}
		if i >= int64(n) {
			if st < 0 {
				return int64(n) - 1, nil
			}
			return int64(n), nil
		}
		return i, nil
	}
	var lo, hi int64
	var err error
	if st > 0 {
		if lo, err = norm(start, 0); err != nil {
			return nil, err
		}
		if hi, err = norm(stop, int64(n)); err != nil {
			return nil, err
		}
	} else {
		if lo, err = norm(start, int64(n)-1); err != nil {
			return nil, err
		}
		if hi, err = norm(stop, -1); err != nil {
			return nil, err
		}
	}
	var idx []int64
	for i := lo; (st > 0 && i < hi) || (st < 0 && i > hi); i += st {
		idx = append(idx, i)
	}
	if l, ok := obj.(*List); ok {
		out := &List{Tuple: l.Tuple, Items: make([]Value, 0, len(idx))}
		for _, i := range idx {
			out.Items = append(out.Items, l.Items[i])
		}
		return out, nil
	}
	var b strings.Builder
	for _, i := range idx {
		b.WriteRune(runes[i])
	}
	return b.String(), nil
}

func binaryOp(op string, l, r Value) (Value, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in", "not in":
		ok, err := contains(r, l)
		if err != nil {
			return nil, err
		}
		return ok == (op == "in"), nil
	}

	lNull, rNull := isNoneLike(l), isNoneLike(r)
	if lNull || rNull {
		// The reference engine treats a missing value next to a string as
		// the empty string for + and ~, and rejects every other use.
		_, lStr := l.(string)
		_, rStr := r.(string)
		if (op == "+" || op == "~") && ((lNull && rStr) || (rNull && lStr)) {
			ls, rs := "", ""
			if lStr {
				ls = l.(string)
			}
			if rStr {
				rs = r.(string)
			}
			return ls + rs, nil
		}
		if op != "~" {
			return nil, fmt.Errorf("cannot apply '%s' to %s and %s", op, typeName(l), typeName(r))
		}
	}

	if isNumber(l) && isNumber(r) && op != "~" {
		_, lf := l.(float64)
		_, rf := r.(float64)
		isFloat := lf || rf
		a, b := toFloat(l), toFloat(r)
		switch op {
		case "+", "-", "*":
			if !isFloat {
				x, y := toInt(l), toInt(r)
				switch op {
				case "+":
					return x + y, nil
				case "-":
					return x - y, nil
				}
				return x * y, nil
			}
			switch op {
			case "+":
				return a + b, nil
			case "-":
				return a - b, nil
			}
			return a * b, nil
		case "/":
			if b == 0 {
				return nil, fmt.Errorf("division by zero")
			}
			return a / b, nil
		case "//":
			if b == 0 {
				return nil, fmt.Errorf("division by zero")
			}
			if !isFloat {
				return int64(math.Floor(a / b)), nil
			}
			return math.Floor(a / b), nil
		case "%":
			if b == 0 {
				return nil, fmt.Errorf("modulo by zero")
			}
			// C fmod, like the reference engine (differs from Python only
			// for negative operands).
			if !isFloat {
				return toInt(l) % toInt(r), nil
			}
			return math.Mod(a, b), nil
		case "**":
			p := math.Pow(a, b)
			if !isFloat && b >= 0 {
				return int64(p), nil
			}
			return p, nil
		case "<":
			return a < b, nil
		case ">":
			return a > b, nil
		case "<=":
			return a <= b, nil
		case ">=":
			return a >= b, nil
		}
	}

	if ll, ok := l.(*List); ok && op == "+" {
		if rl, ok := r.(*List); ok {
			out := &List{Items: make([]Value, 0, len(ll.Items)+len(rl.Items))}
			out.Items = append(append(out.Items, ll.Items...), rl.Items...)
			return out, nil
		}
	}

	ls, lStr := l.(string)
	rs, rStr := r.(string)
	if op == "~" || (op == "+" && (lStr || rStr)) {
		a, err := toStr(l)
		if err != nil {
			return nil, fmt.Errorf("cannot concatenate %s and %s", typeName(l), typeName(r))
		}
		b, err := toStr(r)
		if err != nil {
			return nil, fmt.Errorf("cannot concatenate %s and %s", typeName(l), typeName(r))
		}
		return a + b, nil
	}
	if lStr && rStr {
		switch op {
		case "<":
			return ls < rs, nil
		case ">":
			return ls > rs, nil
		case "<=":
			return ls <= rs, nil
		case ">=":
			return ls >= rs, nil
		}
	}
	if op == "*" {
		if lStr && isNumber(r) {
			return strings.Repeat(ls, int(max(toInt(r), 0))), nil
		}
		if rStr && isNumber(l) {
			return strings.Repeat(rs, int(max(toInt(l), 0))), nil
		}
	}
	return nil, fmt.Errorf("unsupported operator '%s' between %s and %s", op, typeName(l), typeName(r))
}

// contains implements "needle in haystack".
func contains(haystack, needle Value) (bool, error) {
	switch h := haystack.(type) {
	case Undefined:
		return false, nil
	case *List:
		for _, it := range h.Items {
			if equal(needle, it) {
				return true, nil
			}
		}
		return false, nil
	case string:
		n, ok := needle.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' needs a string on the left, got %s", typeName(needle))
		}
		return strings.Contains(h, n), nil
	case *Dict:
		_, ok := h.Get(needle)
		return ok, nil
	}
	return false, fmt.Errorf("'in' needs a list, string or dict on the right, got %s", typeName(haystack))
}
