package jinja

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// jsonDump serializes like Python's json.dumps(ensure_ascii=False), which
// is what HF's tojson filter and the reference engine produce: ", " and
// ": " separators by default, "," between items when indenting, non-ASCII
// left as is, insertion order kept unless sortKeys.
func jsonDump(v Value, indent int, itemSep, keySep string, sortKeys bool) string {
	var b strings.Builder
	writeJSON(&b, v, 0, indent, itemSep, keySep, sortKeys)
	return b.String()
}

func writeJSON(b *strings.Builder, v Value, level, indent int, itemSep, keySep string, sortKeys bool) {
	newline := func(lvl int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", lvl*indent))
		}
	}
	switch x := v.(type) {
	case NoneType, Undefined, *Func:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(jsonFloat(x))
	case string:
		b.WriteString(jsonString(x))
	case *List:
		b.WriteByte('[')
		for i, it := range x.Items {
			if i > 0 {
				b.WriteString(itemSep)
			}
			newline(level + 1)
			writeJSON(b, it, level+1, indent, itemSep, keySep, sortKeys)
		}
		if len(x.Items) > 0 {
			newline(level)
		}
		b.WriteByte(']')
	case *Dict:
		order := make([]int, x.Len())
		for i := range order {
			order[i] = i
		}
		if sortKeys {
			sort.SliceStable(order, func(i, j int) bool {
				a, _ := toStr(x.keys[order[i]])
				c, _ := toStr(x.keys[order[j]])
				return a < c
			})
		}
		b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				b.WriteString(itemSep)
			}
			newline(level + 1)
			k := x.keys[i]
			ks, ok := k.(string)
			if !ok {
				ks, _ = toStr(k)
				if _, isBool := k.(bool); isBool {
					ks = strings.ToLower(ks)
				}
				if _, isNone := k.(NoneType); isNone {
					ks = "null"
				}
			}
			b.WriteString(jsonString(ks))
			b.WriteString(keySep)
			writeJSON(b, x.vals[i], level+1, indent, itemSep, keySep, sortKeys)
		}
		if x.Len() > 0 {
			newline(level)
		}
		b.WriteByte('}')
	default:
		b.WriteString("null")
	}
}

// jsonFloat prints like C++ ostream's default (%g with 6 significant
// digits), the reference engine's float form in JSON.
func jsonFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

// jsonString quotes s escaping only what JSON requires: quote, backslash
// and control characters.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// FromJSON decodes JSON into template values keeping object key order, so
// that tojson reproduces the input's order as llama.cpp (ordered_json)
// does. Integers without fraction or exponent become int64.
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSON(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("json: unexpected data after the value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder) (Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	switch x := tok.(type) {
	case nil:
		return None, nil
	case bool:
		return x, nil
	case string:
		return x, nil
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("json: bad number %s", x)
		}
		return f, nil
	case json.Delim:
		switch x {
		case '[':
			l := &List{}
			for dec.More() {
				v, err := decodeJSON(dec)
				if err != nil {
					return nil, err
				}
				l.Items = append(l.Items, v)
			}
			_, err := dec.Token() // ]
			return l, err
		case '{':
			d := NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("json: %w", err)
				}
				v, err := decodeJSON(dec)
				if err != nil {
					return nil, err
				}
				d.Set(kt.(string), v)
			}
			_, err := dec.Token() // }
			return d, err
		}
	}
	return nil, fmt.Errorf("json: unexpected token %v", tok)
}
