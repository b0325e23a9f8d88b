package pluginconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// valueCodec is implemented by the fields whose YAML form is a union (a word,
// a number or a list). Both decoders and the parser's shape check go through
// fromValue, so the accepted forms are defined once.
type valueCodec interface {
	// fromValue fills the receiver from a generic decoded value (string,
	// number, []any) and explains what is wrong when it cannot.
	fromValue(v any) error
	// toValue returns the generic form to encode.
	toValue() any
	// shapeHint tells the user which forms are accepted.
	shapeHint() string
}

var errNoValue = errors.New("has no value")

// decodeYAML adapts fromValue to yaml.Unmarshaler. Problems are returned as
// *yaml.TypeError so that the YAML decoder records them and keeps decoding
// the rest of the document instead of aborting.
func decodeYAML(n *yaml.Node, c valueCodec) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	if err := c.fromValue(v); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}

// decodeJSON adapts fromValue to json.Unmarshaler.
func decodeJSON(b []byte, c valueCodec) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return c.fromValue(v)
}

// asInt converts the integer forms YAML and JSON decoders produce.
func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case uint64:
		if x <= math.MaxInt32 {
			return int(x), true
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < math.MaxInt32 {
			return int(x), true
		}
	}
	return 0, false
}

// describeValue names a decoded value for messages.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return "the text " + quote(x)
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprint(x)
	}
}

func (d *Devices) fromValue(v any) error {
	*d = Devices{}
	if n, ok := asInt(v); ok {
		d.Count = n
		return nil
	}
	switch x := v.(type) {
	case nil:
		return errNoValue
	case string:
		if x != "all" {
			return fmt.Errorf("%s is not allowed: the only word devices accepts is \"all\"", quote(x))
		}
		d.All = true
		return nil
	case []any:
		// A non-nil empty list is kept so Validate can say it selects nothing.
		d.List = make([]string, 0, len(x))
		for _, item := range x {
			ref, err := deviceRef(item)
			if err != nil {
				return err
			}
			d.List = append(d.List, ref)
		}
		return nil
	}
	return fmt.Errorf("devices cannot be %s", describeValue(v))
}

// deviceRef turns a list entry into its string form. Malformed strings and
// negative numbers pass through so that Validate can explain them precisely.
func deviceRef(v any) (string, error) {
	if n, ok := asInt(v); ok {
		return strconv.Itoa(n), nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("a devices entry cannot be %s", describeValue(v))
}

func (d Devices) toValue() any {
	switch {
	case d.All:
		return "all"
	case d.List != nil:
		items := make([]any, len(d.List))
		for i, ref := range d.List {
			// GPU indices are written as numbers, as the plugin's docs do.
			if n, err := strconv.Atoi(ref); err == nil && n >= 0 {
				items[i] = n
			} else {
				items[i] = ref
			}
		}
		return items
	default:
		return d.Count
	}
}

func (Devices) shapeHint() string {
	return `use "all", a count such as 2, or a list such as [0, 1]`
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Devices) UnmarshalYAML(n *yaml.Node) error { return decodeYAML(n, d) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Devices) UnmarshalJSON(b []byte) error { return decodeJSON(b, d) }

// MarshalYAML writes lists in flow style ([0, 1]), as the plugin's own
// struct tag asks.
func (d Devices) MarshalYAML() (any, error) {
	v := d.toValue()
	items, ok := v.([]any)
	if !ok {
		return v, nil
	}
	var n yaml.Node
	if err := n.Encode(items); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

// MarshalJSON implements json.Marshaler.
func (d Devices) MarshalJSON() ([]byte, error) { return json.Marshal(d.toValue()) }

// StringList is a list of strings that may also be written as one string,
// as plugin.deviceListStrategy allows.
type StringList []string

func (l *StringList) fromValue(v any) error {
	switch x := v.(type) {
	case nil:
		return errNoValue
	case string:
		*l = StringList{x}
		return nil
	case []any:
		out := make(StringList, 0, len(x))
		for _, item := range x {
			s, ok := item.(string)
			if !ok {
				return fmt.Errorf("entries must be text, got %s", describeValue(item))
			}
			out = append(out, s)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("expected text or a list of text, got %s", describeValue(v))
}

func (l StringList) toValue() any {
	if len(l) == 1 {
		return l[0]
	}
	return []string(l)
}

func (StringList) shapeHint() string {
	return "write one value such as envvar, or a list such as [envvar, cdi-cri]"
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error { return decodeYAML(n, l) }

// UnmarshalJSON implements json.Unmarshaler.
func (l *StringList) UnmarshalJSON(b []byte) error { return decodeJSON(b, l) }

// MarshalYAML implements yaml.Marshaler.
func (l StringList) MarshalYAML() (any, error) { return l.toValue(), nil }

// MarshalJSON implements json.Marshaler.
func (l StringList) MarshalJSON() ([]byte, error) { return json.Marshal(l.toValue()) }

// Duration is a time.Duration written as text ("30s"); a bare number means
// nanoseconds, as in the plugin.
type Duration time.Duration

func (d *Duration) fromValue(v any) error {
	if n, ok := asInt(v); ok {
		*d = Duration(n)
		return nil
	}
	switch x := v.(type) {
	case nil:
		return errNoValue
	case string:
		parsed, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("%s is not a duration", quote(x))
		}
		*d = Duration(parsed)
		return nil
	}
	return fmt.Errorf("expected a duration, got %s", describeValue(v))
}

func (d Duration) toValue() any { return time.Duration(d).String() }

func (Duration) shapeHint() string { return `write a duration such as "60s" or "5m"` }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return decodeYAML(n, d) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error { return decodeJSON(b, d) }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.toValue(), nil }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.toValue()) }
