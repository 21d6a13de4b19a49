// Package gguf reads and writes GGUF model files (versions 2 and 3, little-endian).
//
// A File memory-maps the model and hands out tensor bytes in place, so a worker that serves a
// layer range touches only the pages of its own tensors. Every length and count in the header is
// checked against the bytes that remain in the file before anything is allocated, so a corrupt or
// hostile file yields an error naming the problem and its byte offset rather than a panic or an
// out-of-memory kill.
package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// ValueType is the type tag of a metadata value (gguf_type). The numbers are part of the format.
type ValueType uint32

const (
	Uint8 ValueType = iota
	Int8
	Uint16
	Int16
	Uint32
	Int32
	Float32
	Bool
	String
	Array
	Uint64
	Int64
	Float64
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// Valid reports whether t is one of the thirteen types the format defines.
func (t ValueType) Valid() bool { return t <= Float64 }

// scalarSize is the encoded size of a fixed-size value, 0 for strings and arrays.
func (t ValueType) scalarSize() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Uint64, Int64, Float64:
		return 8
	}
	return 0
}

// Value is one metadata value. For scalars V holds the Go value of the matching type (uint8 …
// float64, bool, string). For arrays Type is Array, ElemType names the element type and V is a
// slice: []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string,
// []uint64, []int64, []float64, or []Value when the elements are themselves arrays.
type Value struct {
	Type     ValueType
	ElemType ValueType
	V        any
}

// Constructors keep call sites short and make the Go type and the tag agree by construction.

func U8(v uint8) Value     { return Value{Type: Uint8, V: v} }
func I8(v int8) Value      { return Value{Type: Int8, V: v} }
func U16(v uint16) Value   { return Value{Type: Uint16, V: v} }
func I16(v int16) Value    { return Value{Type: Int16, V: v} }
func U32(v uint32) Value   { return Value{Type: Uint32, V: v} }
func I32(v int32) Value    { return Value{Type: Int32, V: v} }
func F32(v float32) Value  { return Value{Type: Float32, V: v} }
func Boolean(v bool) Value { return Value{Type: Bool, V: v} }
func Str(v string) Value   { return Value{Type: String, V: v} }
func U64(v uint64) Value   { return Value{Type: Uint64, V: v} }
func I64(v int64) Value    { return Value{Type: Int64, V: v} }
func F64(v float64) Value  { return Value{Type: Float64, V: v} }

func Strs(v []string) Value               { return Value{Type: Array, ElemType: String, V: v} }
func F32s(v []float32) Value              { return Value{Type: Array, ElemType: Float32, V: v} }
func I32s(v []int32) Value                { return Value{Type: Array, ElemType: Int32, V: v} }
func U32s(v []uint32) Value               { return Value{Type: Array, ElemType: Uint32, V: v} }
func Arrays(v []Value) Value              { return Value{Type: Array, ElemType: Array, V: v} }
func ArrayOf(elem ValueType, v any) Value { return Value{Type: Array, ElemType: elem, V: v} }

// check reports whether V holds the Go type that Type (and ElemType) promise; the writer relies on
// it so that a mislabelled value fails loudly instead of producing a file nobody can read.
func (v Value) check() error {
	if v.Type == Array {
		if v.ElemType == Array {
			elems, ok := v.V.([]Value)
			if !ok {
				return fmt.Errorf("array of arrays holds %T, want []gguf.Value", v.V)
			}
			for i, e := range elems {
				if e.Type != Array {
					return fmt.Errorf("element %d of an array of arrays has type %s", i, e.Type)
				}
				if err := e.check(); err != nil {
					return fmt.Errorf("element %d: %w", i, err)
				}
			}
			return nil
		}
		if !v.ElemType.Valid() {
			return fmt.Errorf("unknown array element type %d", uint32(v.ElemType))
		}
		if _, ok := arrayLen(v); !ok {
			return fmt.Errorf("array of %s holds %T", v.ElemType, v.V)
		}
		return nil
	}
	ok := false
	switch v.Type {
	case Uint8:
		_, ok = v.V.(uint8)
	case Int8:
		_, ok = v.V.(int8)
	case Uint16:
		_, ok = v.V.(uint16)
	case Int16:
		_, ok = v.V.(int16)
	case Uint32:
		_, ok = v.V.(uint32)
	case Int32:
		_, ok = v.V.(int32)
	case Float32:
		_, ok = v.V.(float32)
	case Bool:
		_, ok = v.V.(bool)
	case String:
		_, ok = v.V.(string)
	case Uint64:
		_, ok = v.V.(uint64)
	case Int64:
		_, ok = v.V.(int64)
	case Float64:
		_, ok = v.V.(float64)
	default:
		return fmt.Errorf("unknown value type %d", uint32(v.Type))
	}
	if !ok {
		return fmt.Errorf("%s value holds %T", v.Type, v.V)
	}
	return nil
}

// arrayLen returns the element count of an array value whose slice type matches ElemType.
func arrayLen(v Value) (int, bool) {
	switch v.ElemType {
	case Uint8:
		s, ok := v.V.([]uint8)
		return len(s), ok
	case Int8:
		s, ok := v.V.([]int8)
		return len(s), ok
	case Uint16:
		s, ok := v.V.([]uint16)
		return len(s), ok
	case Int16:
		s, ok := v.V.([]int16)
		return len(s), ok
	case Uint32:
		s, ok := v.V.([]uint32)
		return len(s), ok
	case Int32:
		s, ok := v.V.([]int32)
		return len(s), ok
	case Float32:
		s, ok := v.V.([]float32)
		return len(s), ok
	case Bool:
		s, ok := v.V.([]bool)
		return len(s), ok
	case String:
		s, ok := v.V.([]string)
		return len(s), ok
	case Uint64:
		s, ok := v.V.([]uint64)
		return len(s), ok
	case Int64:
		s, ok := v.V.([]int64)
		return len(s), ok
	case Float64:
		s, ok := v.V.([]float64)
		return len(s), ok
	case Array:
		s, ok := v.V.([]Value)
		return len(s), ok
	}
	return 0, false
}

// Len is the element count of an array value, 0 for scalars.
func (v Value) Len() int {
	if v.Type != Array {
		return 0
	}
	n, _ := arrayLen(v)
	return n
}

// asUint converts any integer scalar that is not negative.
func (v Value) asUint() (uint64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// asInt converts any integer scalar that fits an int64.
func (v Value) asInt() (int64, bool) {
	switch x := v.V.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= 1<<63-1
	}
	return 0, false
}

// Format renders the value for people: strings quoted, arrays cut to their first maxElems
// elements followed by the total count (maxElems < 0 shows everything).
func (v Value) Format(maxElems int) string {
	var b strings.Builder
	v.format(&b, maxElems)
	return b.String()
}

func (v Value) format(b *strings.Builder, maxElems int) {
	if v.Type != Array {
		switch x := v.V.(type) {
		case string:
			b.WriteString(strconv.Quote(x))
		case float32:
			b.WriteString(strconv.FormatFloat(float64(x), 'g', -1, 32))
		case float64:
			b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		default:
			fmt.Fprint(b, x)
		}
		return
	}
	n := v.Len()
	shown := n
	if maxElems >= 0 && shown > maxElems {
		shown = maxElems
	}
	b.WriteByte('[')
	for i := 0; i < shown; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		v.elem(i).format(b, maxElems)
	}
	if shown < n {
		if shown > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "… (%d %s)", n, v.ElemType)
	}
	b.WriteByte(']')
}

// elem returns element i of an array value as a Value.
func (v Value) elem(i int) Value {
	switch s := v.V.(type) {
	case []uint8:
		return U8(s[i])
	case []int8:
		return I8(s[i])
	case []uint16:
		return U16(s[i])
	case []int16:
		return I16(s[i])
	case []uint32:
		return U32(s[i])
	case []int32:
		return I32(s[i])
	case []float32:
		return F32(s[i])
	case []bool:
		return Boolean(s[i])
	case []string:
		return Str(s[i])
	case []uint64:
		return U64(s[i])
	case []int64:
		return I64(s[i])
	case []float64:
		return F64(s[i])
	case []Value:
		return s[i]
	}
	return Value{}
}

// JSON returns a value suitable for encoding/json: scalars and slices as they are, arrays of
// arrays recursively.
func (v Value) JSON() any {
	if s, ok := v.V.([]Value); ok {
		out := make([]any, len(s))
		for i, e := range s {
			out[i] = e.JSON()
		}
		return out
	}
	return v.V
}
