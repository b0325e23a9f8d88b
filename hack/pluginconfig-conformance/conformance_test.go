// Package conformance holds pkg/pluginconfig to the NVIDIA device plugin's
// own configuration types, so that schema drift fails a test: every field
// the plugin reads must be one gpuslice reads (or `config validate` would
// call a valid file wrong), and every field gpuslice reads must be the
// plugin's, unless it is listed below as newer than the pinned release.
package conformance

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	nvidia "github.com/NVIDIA/k8s-device-plugin/api/config/v1"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
)

// newerThanPinned are fields of pluginconfig that the pinned device-plugin
// release (go.mod: v0.17.4, the newest the Go module proxy lists) does not
// have; later releases of the plugin read them. Each says why it is kept.
var newerThanPinned = map[string]string{
	"flags.gdrcopyEnabled":         "GDRCopy support, after v0.17.4",
	"flags.plugin.cdiFeatureFlags": "CDI feature flags, after v0.17.4",
	"flags.plugin.kubeletSocket":   "the kubelet socket path, after v0.17.4",
}

func TestFieldsMatchTheDevicePlugin(t *testing.T) {
	theirs, ours := jsonPaths(reflect.TypeFor[nvidia.Config]()), jsonPaths(reflect.TypeFor[pluginconfig.Config]())
	for _, p := range slices.Sorted(maps.Keys(theirs)) {
		if !covered(p, ours) {
			t.Errorf("the device plugin reads %s, pkg/pluginconfig does not: add it to pluginconfig's types (and its validation)", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(ours)) {
		if _, newer := newerThanPinned[p]; !newer && !covered(p, theirs) {
			t.Errorf("pkg/pluginconfig reads %s, the device plugin's api/config/v1 does not: a typo, a removed field, or one newer than the pinned release (list it in newerThanPinned)", p)
		}
	}
	for p := range newerThanPinned {
		if covered(p, theirs) {
			t.Errorf("%s is in the pinned device plugin now: remove it from newerThanPinned", p)
		}
	}
}

// TestRenderedConfigReadsTheSame: the seed's config as gpuslice renders it
// (8 time-sliced replicas, renamed to nvidia.com/gpu.shared) is read by
// the device plugin's own types and parser the way gpuslice meant it.
func TestRenderedConfigReadsTheSame(t *testing.T) {
	cfg, err := pluginconfig.Render(pluginconfig.RenderOptions{Replicas: 8, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := pluginconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var theirs nvidia.Config
	// The plugin's parseConfigFrom reads the file with sigs.k8s.io/yaml.
	if err := yaml.Unmarshal(data, &theirs); err != nil {
		t.Fatalf("the device plugin cannot read gpuslice's rendered config: %v\n%s", err, data)
	}
	ts := theirs.Sharing.TimeSlicing
	if theirs.Version != pluginconfig.Version || ts.RenameByDefault != true || len(ts.Resources) != 1 {
		t.Fatalf("the device plugin reads %+v from\n%s", theirs, data)
	}
	r := ts.Resources[0]
	if string(r.Name) != pluginconfig.DefaultResourceName || r.Replicas != 8 || !r.Devices.All {
		t.Errorf("the device plugin reads resource %+v, want %s x8 on all GPUs", r, pluginconfig.DefaultResourceName)
	}
}

// jsonPaths lists the dotted JSON field paths of t, marking leaves. A
// struct that decodes itself from other than its fields (a custom
// UnmarshalJSON and no JSON-tagged field) is a leaf.
func jsonPaths(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type, prefix string, seen []reflect.Type)
	walk = func(t reflect.Type, prefix string, seen []reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || selfDecoding(t) || slices.Contains(seen, t) {
			if prefix != "" {
				out[prefix] = true
			}
			return
		}
		if prefix != "" {
			out[prefix] = false
		}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-" || !f.IsExported() && !f.Anonymous:
				continue
			case f.Anonymous && name == "":
				walk(f.Type, prefix, append(seen, t)) // embedded: its fields are this struct's
				continue
			case name == "":
				name = f.Name
			}
			walk(f.Type, strings.TrimPrefix(prefix+"."+name, "."), append(seen, t))
		}
	}
	walk(t, "", nil)
	return out
}

func selfDecoding(t reflect.Type) bool {
	if !reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return false
	}
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			return false
		}
	}
	return true
}

// covered: p is one of paths, or lies under one of its leaves.
func covered(p string, paths map[string]bool) bool {
	if _, ok := paths[p]; ok {
		return true
	}
	for q, leaf := range paths {
		if leaf && strings.HasPrefix(p, q+".") {
			return true
		}
	}
	return false
}
