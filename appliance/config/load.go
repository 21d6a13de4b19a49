package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// DefaultFile is read when no --config is given and the file exists (the NixOS module writes it).
const DefaultFile = "/etc/exo/config.yaml"

// EnvPrefix starts every configuration environment variable; "__" separates nesting levels.
const EnvPrefix = "EXO_"

// envNotConfig are EXO_ variables that are not configuration keys and must not be rejected as
// unknown keys.
var envNotConfig = map[string]bool{
	"EXO_FIXTURES": true, // test fixture location
	"EXO_CONFIG":   true, // config file path, read by the CLI
	// Test and tooling variables that share the prefix.
	"EXO_BIN":         true,
	"EXO_TEST_OUTPUT": true,
}

// envAliases map well-known variables onto keys.
var envAliases = map[string]string{
	"EXO_JOIN_TOKEN": "cluster.token",
}

// Error is a configuration problem tied to one key. The CLI exits with status 2 on it.
type Error struct {
	Key    string
	Source string // "default", "file PATH", "env NAME", "flag --name"
	Value  any
	Reason string
}

func (e *Error) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("config key %s (from %s): %s", e.Key, e.Source, e.Reason)
	}
	return fmt.Sprintf("config key %s (from %s) = %q: %s", e.Key, e.Source, fmt.Sprint(e.Value), e.Reason)
}

// IsConfigError reports whether err is (or wraps) a configuration error.
func IsConfigError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// Sources tell Load where to look. Flags may be nil; only flags the user set are applied.
type Sources struct {
	File     string // explicit --config; "" means DefaultFile when present
	NoFile   bool   // skip any file
	Environ  []string
	Flags    *pflag.FlagSet
	FlagKeys map[string]string // flag name -> config key
}

// Loaded is the effective configuration with the origin of each key.
type Loaded struct {
	Config Config
	Origin map[string]string // key -> source label
	File   string            // config file actually read, "" if none
	merged *koanf.Koanf
}

// fieldInfo describes one configuration key of the typed struct.
type fieldInfo struct {
	index  []int
	typ    reflect.Type
	secret bool
}

var fields = func() map[string]fieldInfo {
	out := map[string]fieldInfo{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := prefix + f.Tag.Get("koanf")
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, key+".", idx)
				continue
			}
			out[key] = fieldInfo{index: idx, typ: f.Type, secret: f.Tag.Get("secret") == "true"}
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	return out
}()

// Keys returns every configuration key, sorted.
func Keys() []string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Load reads every source, checks each value against its key's type, and validates the result.
func Load(src Sources) (*Loaded, error) {
	l := &Loaded{Origin: map[string]string{}, merged: koanf.New(".")}
	var cfg Config

	layer := func(k *koanf.Koanf, source func(key string) string, fromText bool) error {
		flat := k.All()
		keys := make([]string, 0, len(flat))
		for key := range flat {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			val := flat[key]
			if val == nil {
				continue // an empty YAML entry sets nothing
			}
			fi, ok := fields[key]
			if !ok && isSection(key) {
				return &Error{Key: key, Source: source(key), Value: val, Reason: "is a section; want a mapping of its keys"}
			}
			if !ok {
				return &Error{Key: key, Source: source(key), Value: val, Reason: "unknown key" + suggest(key)}
			}
			if err := assign(&cfg, fi, val, fromText); err != nil {
				return &Error{Key: key, Source: source(key), Value: val, Reason: err.Error()}
			}
			l.Origin[key] = source(key)
			if err := l.merged.Set(key, val); err != nil {
				return fmt.Errorf("merge %s: %w", key, err)
			}
		}
		return nil
	}

	defaults := koanf.New(".")
	if err := defaults.Load(confmap.Provider(Defaults(), "."), nil); err != nil {
		return nil, fmt.Errorf("load defaults: %w", err)
	}
	if err := layer(defaults, func(string) string { return "default" }, false); err != nil {
		return nil, err
	}

	path := src.File
	if path == "" && !src.NoFile {
		if _, err := os.Stat(DefaultFile); err == nil {
			path = DefaultFile
		}
	}
	if path != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, &Error{Key: "config", Source: "flag --config", Value: path, Reason: fmt.Sprintf("cannot read config file: %v", err)}
		}
		if err := layer(fk, func(string) string { return "file " + path }, false); err != nil {
			return nil, err
		}
		l.File = path
	}

	environ := src.Environ
	if environ == nil {
		environ = os.Environ()
	}
	ek := koanf.New(".")
	envName := map[string]string{}
	var envErr error
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if envNotConfig[name] {
				return "", nil
			}
			key, ok := envAliases[name]
			if !ok {
				key = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, EnvPrefix), "__", "."))
			}
			if key == "" && envErr == nil {
				envErr = &Error{Key: name, Source: "env " + name, Value: value, Reason: "empty key"}
			}
			envName[key] = name
			return key, value
		},
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("read environment: %w", err)
	}
	if envErr != nil {
		return nil, envErr
	}
	if err := layer(ek, func(key string) string { return "env " + envName[key] }, true); err != nil {
		return nil, err
	}

	if src.Flags != nil {
		fk := koanf.New(".")
		flagName := map[string]string{}
		err := fk.Load(posflag.ProviderWithFlag(src.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := src.FlagKeys[f.Name]
			if !ok {
				return "", nil
			}
			flagName[key] = f.Name
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				return key, sv.GetSlice()
			}
			return key, f.Value.String()
		}), nil)
		if err != nil {
			return nil, fmt.Errorf("read flags: %w", err)
		}
		if err := layer(fk, func(key string) string { return "flag --" + flagName[key] }, true); err != nil {
			return nil, err
		}
	}

	l.Config = cfg
	l.resolve(environ)
	if err := l.validate(); err != nil {
		return nil, err
	}
	return l, nil
}

// assign converts val to the field's type and stores it. Text sources (environment, flags) carry
// strings that are parsed; typed sources (defaults, YAML) must already have the right type.
func assign(cfg *Config, fi fieldInfo, val any, fromText bool) error {
	dst := reflect.ValueOf(cfg).Elem().FieldByIndex(fi.index)
	switch {
	case fi.typ == reflect.TypeOf(time.Duration(0)):
		s, ok := val.(string)
		if !ok {
			return fmt.Errorf("want a duration such as \"30s\", got %T", val)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("not a duration (e.g. \"30s\", \"2m\")")
		}
		dst.SetInt(int64(d))
	case fi.typ.Kind() == reflect.String:
		s, ok := val.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s", typeName(val))
		}
		dst.SetString(s)
	case fi.typ.Kind() == reflect.Bool:
		switch v := val.(type) {
		case bool:
			dst.SetBool(v)
		case string:
			if !fromText {
				return fmt.Errorf("want true or false, got a string")
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			dst.SetBool(b)
		default:
			return fmt.Errorf("want true or false, got %s", typeName(val))
		}
	case fi.typ.Kind() == reflect.Int:
		switch v := val.(type) {
		case int:
			dst.SetInt(int64(v))
		case int64:
			dst.SetInt(v)
		case float64:
			if v != float64(int64(v)) {
				return fmt.Errorf("want a whole number")
			}
			dst.SetInt(int64(v))
		case string:
			if !fromText {
				return fmt.Errorf("want a number, got a string")
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("not a number")
			}
			dst.SetInt(int64(n))
		default:
			return fmt.Errorf("want a number, got %s", typeName(val))
		}
	case fi.typ.Kind() == reflect.Slice && fi.typ.Elem().Kind() == reflect.String:
		var list []string
		switch v := val.(type) {
		case []string:
			list = v
		case []any:
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("element %d: want a string, got %s", i, typeName(e))
				}
				list = append(list, s)
			}
		case string:
			if !fromText {
				return fmt.Errorf("want a list of strings, got a string")
			}
			for _, part := range strings.Split(v, ",") {
				if p := strings.TrimSpace(part); p != "" {
					list = append(list, p)
				}
			}
		default:
			return fmt.Errorf("want a list of strings, got %s", typeName(val))
		}
		dst.Set(reflect.ValueOf(append([]string{}, list...)))
	default:
		return fmt.Errorf("internal: unsupported field type %s", fi.typ)
	}
	return nil
}

func isSection(key string) bool {
	for k := range fields {
		if strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case int, int64, float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// suggest names the closest known key, so that a typo points at its fix.
func suggest(key string) string {
	best, bestD := "", 4
	for k := range fields {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Redacted returns the effective configuration as a nested map with secrets replaced.
func (l *Loaded) Redacted() map[string]any {
	k := koanf.New(".")
	for key, val := range l.merged.All() {
		if fields[key].secret && !isEmpty(val) {
			val = "<redacted>"
		}
		_ = k.Set(key, val)
	}
	// Values filled in by Resolve (node name, data directory...) are part of the effective config.
	v := reflect.ValueOf(l.Config)
	for key, fi := range fields {
		if fi.secret {
			continue
		}
		val := v.FieldByIndex(fi.index).Interface()
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		_ = k.Set(key, val)
	}
	return k.Raw()
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []string:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return v == nil
}
