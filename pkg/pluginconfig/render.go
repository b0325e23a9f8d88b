package pluginconfig

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Where the plugin's config lives in our cluster, and the key it is stored
// under (see the package documentation for why "default").
const (
	DefaultConfigMapName = "nvidia-device-plugin-config"
	DefaultNamespace     = "kube-system"
	DefaultConfigMapKey  = "default"
)

// RenderOptions describes a one-resource sharing config, as a CLI asks for it.
type RenderOptions struct {
	// Replicas is the number of shares per GPU (at least 2).
	Replicas int
	// Rename sets renameByDefault: the resource is advertised as <name>.shared.
	Rename bool
	// FailRequestsGreaterThanOne is always written explicitly, for MPS too
	// (where leaving it out would mean true).
	FailRequestsGreaterThanOne bool
	// ResourceName defaults to nvidia.com/gpu.
	ResourceName string
	// Devices is "" or "all" for every GPU, a count ("2"), or a comma-separated
	// list of GPU indices, MIG indices or UUIDs. The plugin ignores anything
	// but "all", so Render refuses it.
	Devices string
	// MPS selects sharing.mps instead of sharing.timeSlicing.
	MPS bool
	// ConfigMapName, Namespace and Key place the config for RenderConfigMap;
	// they default to DefaultConfigMapName, DefaultNamespace and
	// DefaultConfigMapKey.
	ConfigMapName, Namespace, Key string
}

func (o RenderOptions) withDefaults() RenderOptions {
	defaults := []struct {
		field *string
		value string
	}{
		{&o.ResourceName, DefaultResourceName},
		{&o.ConfigMapName, DefaultConfigMapName},
		{&o.Namespace, DefaultNamespace},
		{&o.Key, DefaultConfigMapKey},
	}
	for _, d := range defaults {
		if *d.field == "" {
			*d.field = d.value
		}
	}
	return o
}

// Render builds the config for o and validates it; the error wraps
// ValidationErrors when the options describe a config the plugin would
// refuse or misread.
func Render(o RenderOptions) (*Config, error) {
	o = o.withDefaults()
	rr := &ReplicatedResources{
		RenameByDefault:            ptr(o.Rename),
		FailRequestsGreaterThanOne: ptr(o.FailRequestsGreaterThanOne),
		Resources: []ReplicatedResource{{
			Name:     o.ResourceName,
			Devices:  parseDevicesOption(o.Devices),
			Replicas: o.Replicas,
		}},
	}
	c := &Config{Version: Version}
	if o.MPS {
		c.Sharing.MPS = rr
	} else {
		c.Sharing.TimeSlicing = rr
	}
	if err := Validate(c).Err(); err != nil {
		return nil, fmt.Errorf("pluginconfig: invalid render options: %w", err)
	}
	return c, nil
}

// parseDevicesOption reads the CLI form of devices. Malformed entries are
// kept as they are so that Validate can explain them.
func parseDevicesOption(s string) *Devices {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		return &Devices{Count: n}
	}
	var list []string
	for item := range strings.SplitSeq(s, ",") {
		list = append(list, strings.TrimSpace(item))
	}
	return &Devices{List: list}
}

// RenderConfigMap renders the ConfigMap the plugin reads: the config of o,
// marshalled under o.Key.
func RenderConfigMap(o RenderOptions) (*corev1.ConfigMap, error) {
	o = o.withDefaults()
	var errs []error
	for _, check := range []struct {
		what, value string
		check       func(string) []string
	}{
		{"ConfigMap name", o.ConfigMapName, validation.IsDNS1123Subdomain},
		{"namespace", o.Namespace, validation.IsDNS1123Label},
		{"ConfigMap key", o.Key, validation.IsConfigMapKey},
	} {
		if msgs := check.check(check.value); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("pluginconfig: %s %s: %s", check.what, quote(check.value), strings.Join(msgs, "; ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c, err := Render(o)
	if err != nil {
		return nil, err
	}
	data, err := Marshal(c)
	if err != nil {
		return nil, err
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: o.ConfigMapName, Namespace: o.Namespace},
		Data:       map[string]string{o.Key: string(data)},
	}, nil
}

// Marshal writes c as YAML in the plugin's field order with two-space
// indentation, the style of the file in our cluster. An empty version is
// written as v1, which is how the plugin reads it.
func Marshal(c *Config) ([]byte, error) {
	if c == nil {
		return nil, errors.New("pluginconfig: marshal: nil config")
	}
	out := *c
	if out.Version == "" {
		out.Version = Version
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("pluginconfig: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("pluginconfig: marshal: %w", err)
	}
	return buf.Bytes(), nil
}

// FromConfigMap parses the config stored under key in cm (in data or
// binaryData). With key "" the ConfigMap must hold exactly one key.
func FromConfigMap(cm *corev1.ConfigMap, key string) (*Config, error) {
	if cm == nil {
		return nil, errors.New("pluginconfig: nil ConfigMap")
	}
	ref := cm.Namespace + "/" + cm.Name
	keys := sets.List(sets.KeySet(cm.Data).Union(sets.KeySet(cm.BinaryData)))
	if key == "" {
		switch len(keys) {
		case 0:
			return nil, fmt.Errorf("pluginconfig: ConfigMap %s has no data, so the plugin has no config to read", ref)
		case 1:
			key = keys[0]
		default:
			hint := ""
			if slices.Contains(keys, DefaultConfigMapKey) {
				hint = fmt.Sprintf("; without a node label or config.default the plugin reads %s", quote(DefaultConfigMapKey))
			}
			return nil, fmt.Errorf("pluginconfig: ConfigMap %s has %d keys (%s): name the one to read%s",
				ref, len(keys), quoteAll(keys), hint)
		}
	}
	raw, ok := cm.Data[key]
	if !ok {
		b, ok := cm.BinaryData[key]
		if !ok {
			return nil, fmt.Errorf("pluginconfig: ConfigMap %s has no key %s (keys: %s)", ref, quote(key), quoteAll(keys))
		}
		raw = string(b)
	}
	c, err := Parse([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("pluginconfig: ConfigMap %s key %s:\n%w", ref, quote(key), err)
	}
	return c, nil
}
