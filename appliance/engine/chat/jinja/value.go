package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Value is a template value. The dynamic types are: Undefined, NoneType,
// bool, int64, float64, string, *List, *Dict and *Func.
type Value any

// Undefined is the value of a name or key that does not exist. Name records
// what was looked up, for error messages.
type Undefined struct{ Name string }

// NoneType is the type of None (JSON null).
type NoneType struct{}

// None is the template's none/None.
var None Value = NoneType{}

// List is a Jinja list, or a tuple when Tuple is set. Tuples only differ in
// how they print and in equality (a tuple never equals a list).
type List struct {
	Items []Value
	Tuple bool
}

// NewList returns a list holding items.
func NewList(items ...Value) *List { return &List{Items: items} }

// Dict is an insertion-ordered mapping. Keys are usually strings, but any
// hashable value (number, bool, string, none) can be a key, as in Python.
type Dict struct {
	keys  []Value
	vals  []Value
	index map[hashKey]int
	// plain marks objects without methods (the loop object), so that a key
	// such as "length" is never shadowed by a method of the same name.
	plain bool
}

// NewDict returns an empty dict.
func NewDict() *Dict { return &Dict{index: map[hashKey]int{}} }

type hashKey struct {
	kind int // 0 none, 1 number, 2 string
	num  float64
	str  string
}

func keyOf(k Value) (hashKey, error) {
	switch v := k.(type) {
	case NoneType:
		return hashKey{kind: 0}, nil
	case bool:
		if v {
			return hashKey{kind: 1, num: 1}, nil
		}
		return hashKey{kind: 1}, nil
	case int64:
		return hashKey{kind: 1, num: float64(v)}, nil
	case float64:
		return hashKey{kind: 1, num: v}, nil
	case string:
		return hashKey{kind: 2, str: v}, nil
	}
	return hashKey{}, fmt.Errorf("unhashable dict key of type %s", typeName(k))
}

// Set inserts or replaces key k; a replaced key keeps its position.
func (d *Dict) Set(k string, v Value) { _ = d.SetKey(k, v) }

// SetKey is Set for any hashable key.
func (d *Dict) SetKey(k Value, v Value) error {
	hk, err := keyOf(k)
	if err != nil {
		return err
	}
	if i, ok := d.index[hk]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[hk] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// Get returns the value stored under k.
func (d *Dict) Get(k Value) (Value, bool) {
	hk, err := keyOf(k)
	if err != nil {
		return nil, false
	}
	i, ok := d.index[hk]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// Len is the number of entries.
func (d *Dict) Len() int { return len(d.keys) }

// Keys returns the keys in insertion order.
func (d *Dict) Keys() []Value { return append([]Value(nil), d.keys...) }

func (d *Dict) copy() *Dict {
	n := NewDict()
	for i, k := range d.keys {
		_ = n.SetKey(k, d.vals[i])
	}
	return n
}

// Func is a callable: a global function, a bound method or a macro.
type Func struct {
	Name string
	Fn   func(c *callCtx, args []Value, kw *kwargs) (Value, error)
}

// kwargs keeps keyword arguments in call order.
type kwargs struct {
	names []string
	vals  []Value
}

func (k *kwargs) get(name string) (Value, bool) {
	if k == nil {
		return nil, false
	}
	for i, n := range k.names {
		if n == name {
			return k.vals[i], true
		}
	}
	return nil, false
}

func (k *kwargs) len() int {
	if k == nil {
		return 0
	}
	return len(k.names)
}

// FromGo converts plain Go data (as produced by encoding/json, or built by
// hand) into template values. Map keys are sorted, because Go maps have no
// order; build a *Dict directly where order matters.
func FromGo(v any) Value {
	switch x := v.(type) {
	case nil:
		return None
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case []string:
		l := &List{}
		for _, s := range x {
			l.Items = append(l.Items, s)
		}
		return l
	case []any:
		l := &List{}
		for _, e := range x {
			l.Items = append(l.Items, FromGo(e))
		}
		return l
	case map[string]any:
		d := NewDict()
		for _, k := range sortedKeys(x) {
			d.Set(k, FromGo(x[k]))
		}
		return d
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func typeName(v Value) string {
	switch x := v.(type) {
	case Undefined:
		if x.Name != "" {
			return "undefined ('" + x.Name + "')"
		}
		return "undefined"
	case NoneType:
		return "none"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case string:
		return "string"
	case *List:
		if x.Tuple {
			return "tuple"
		}
		return "list"
	case *Dict:
		return "dict"
	case *Func:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

func isUndefined(v Value) bool { _, ok := v.(Undefined); return ok }

// isNoneLike is true for none and undefined: the engine being mirrored treats
// a missing value as none in tests and concatenation.
func isNoneLike(v Value) bool {
	switch v.(type) {
	case Undefined, NoneType:
		return true
	}
	return false
}

func isNumber(v Value) bool {
	switch v.(type) {
	case int64, float64, bool:
		return true
	}
	return false
}

func toFloat(v Value) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

func toInt(v Value) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return int64(x)
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

func truthy(v Value) bool {
	switch x := v.(type) {
	case Undefined, NoneType:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case *List:
		return len(x.Items) > 0
	case *Dict:
		return x.Len() > 0
	}
	return true
}

// formatFloat prints a float the way the reference engine does in text
// output: C's "%f" (six decimals) with trailing zeros removed but one kept
// after the point, so 2.0 prints "2.0" and 0.1+0.2 prints "0.3".
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'f', 6, 64)
	s = strings.TrimRight(s, "0")
	if strings.HasSuffix(s, ".") {
		s += "0"
	}
	return s
}

// toStr converts a value for string concatenation, join and the string
// filter. Undefined and functions have no string form.
func toStr(v Value) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return formatFloat(x), nil
	case bool:
		if x {
			return "True", nil
		}
		return "False", nil
	case NoneType:
		return "None", nil
	case *List, *Dict:
		return repr(v), nil
	}
	return "", fmt.Errorf("%s has no string form", typeName(v))
}

// repr is the Python-like form used when a list or dict is converted to a
// string: strings quoted with ' unless they contain one, then JSON-quoted.
func repr(v Value) string {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "'") {
			return jsonString(x)
		}
		return "'" + x + "'"
	case *List:
		var b strings.Builder
		if x.Tuple {
			b.WriteByte('(')
		} else {
			b.WriteByte('[')
		}
		for i, it := range x.Items {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(repr(it))
		}
		if x.Tuple {
			if len(x.Items) == 1 {
				b.WriteByte(',')
			}
			b.WriteByte(')')
		} else {
			b.WriteByte(']')
		}
		return b.String()
	case *Dict:
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(repr(k))
			b.WriteString(": ")
			b.WriteString(repr(x.vals[i]))
		}
		b.WriteByte('}')
		return b.String()
	case Undefined:
		return "Undefined"
	case *Func:
		return "<function " + x.Name + ">"
	}
	s, _ := toStr(v)
	return s
}

// writeOutput appends what {{ v }} prints. Mirroring the reference engine,
// lists print their items back to back and none, undefined, dicts and
// functions print nothing.
func writeOutput(b *strings.Builder, v Value) {
	switch x := v.(type) {
	case string:
		b.WriteString(x)
	case int64, float64, bool:
		s, _ := toStr(x)
		b.WriteString(s)
	case *List:
		for _, it := range x.Items {
			writeOutput(b, it)
		}
	}
}

// equal is == between template values: numbers (and booleans) compare by
// value across int/float, everything else only within its own type.
func equal(a, b Value) bool {
	switch x := a.(type) {
	case int64, float64, bool:
		if !isNumber(b) {
			return false
		}
		return toFloat(a) == toFloat(b) && toInt(a) == toInt(b)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case NoneType:
		_, ok := b.(NoneType)
		return ok
	case Undefined:
		return isUndefined(b)
	case *List:
		y, ok := b.(*List)
		if !ok || x.Tuple != y.Tuple || len(x.Items) != len(y.Items) {
			return false
		}
		for i := range x.Items {
			if !equal(x.Items[i], y.Items[i]) {
				return false
			}
		}
		return true
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for i, k := range x.keys {
			w, ok := y.Get(k)
			if !ok || !equal(x.vals[i], w) {
				return false
			}
		}
		return true
	case *Func:
		return a == b
	}
	return false
}
