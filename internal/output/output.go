// Package output writes command results in the formats kubectl users know:
// a table by default, or -o json / -o yaml.
package output

import (
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Formats every command accepts with -o.
const (
	Table = "table"
	Wide  = "wide"
	JSON  = "json"
	YAML  = "yaml"
)

// Check rejects an unknown -o value with the accepted ones.
func Check(format string, allowWide bool) error {
	switch format {
	case "", Table, JSON, YAML:
		return nil
	case Wide:
		if allowWide {
			return nil
		}
	}
	if allowWide {
		return fmt.Errorf("unknown output format %q: use table, wide, json or yaml", format)
	}
	return fmt.Errorf("unknown output format %q: use table, json or yaml", format)
}

// IsStructured says whether format is json or yaml.
func IsStructured(format string) bool { return format == JSON || format == YAML }

// Write writes v as JSON or YAML. Kubernetes objects get their apiVersion
// and kind filled in, as kubectl prints them.
func Write(w io.Writer, format string, v any) error {
	if obj, ok := v.(runtime.Object); ok {
		var p printers.ResourcePrinter = &printers.JSONPrinter{}
		if format == YAML {
			p = &printers.YAMLPrinter{}
		}
		if err := printers.NewTypeSetter(scheme.Scheme).ToPrinter(p).PrintObj(obj, w); err != nil {
			return fmt.Errorf("printing %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
		return nil
	}
	var (
		b   []byte
		err error
	)
	switch format {
	case JSON:
		b, err = json.MarshalIndent(v, "", "    ")
		b = append(b, '\n')
	case YAML:
		b, err = yaml.Marshal(v)
	default:
		return Check(format, true)
	}
	if err != nil {
		return fmt.Errorf("encoding %s output: %w", format, err)
	}
	_, err = w.Write(b)
	return err
}
