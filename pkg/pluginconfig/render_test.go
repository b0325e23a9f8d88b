package pluginconfig

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The CLI's "--replicas 8 --rename" must produce exactly the cluster's file.
func TestRenderReproducesSeed(t *testing.T) {
	seed := readTestdata(t, "seed.yaml")
	c, err := Render(RenderOptions{Replicas: 8, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	if parsed := mustParse(t, string(seed)); !reflect.DeepEqual(c, parsed) {
		t.Errorf("Render = %+v, want the seed's %+v", c, parsed)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(seed) {
		t.Errorf("Marshal(Render) =\n%s\nwant the seed byte for byte:\n%s", out, seed)
	}
}

func TestRenderGolden(t *testing.T) {
	tests := map[string]RenderOptions{
		"render-timeslicing": {Replicas: 4},
		"render-mps":         {Replicas: 4, MPS: true, Rename: true, FailRequestsGreaterThanOne: true},
		"render-mig":         {Replicas: 2, ResourceName: "nvidia.com/mig-1g.10gb", FailRequestsGreaterThanOne: true},
		"render-devices-all": {Replicas: 3, Devices: "all"},
	}
	for name, o := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Render(o)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, out)
			// What we write must pass our own strict parser unchanged.
			if back := mustParse(t, string(out)); !reflect.DeepEqual(back, c) {
				t.Errorf("Parse(Marshal(c)) = %+v, want %+v", back, c)
			}
		})
	}
}

func TestRenderRejectsWhatThePluginWouldRefuseOrIgnore(t *testing.T) {
	tests := []struct {
		name string
		opts RenderOptions
		want want
	}{
		{"replicas unset", RenderOptions{}, want{"sharing.timeSlicing.resources[0].replicas", "is missing or empty", 0}},
		{"one replica", RenderOptions{Replicas: 1}, want{"sharing.timeSlicing.resources[0].replicas", "at least 2, got 1", 0}},
		{"device list", RenderOptions{Replicas: 2, Devices: "0, 1"}, want{"sharing.timeSlicing.resources[0].devices", "shares every GPU", 0}},
		{"device count", RenderOptions{Replicas: 2, Devices: "2"}, want{"sharing.timeSlicing.resources[0].devices", "shares every GPU", 0}},
		{"bad device", RenderOptions{Replicas: 2, Devices: "0,GPU-x"}, want{"sharing.timeSlicing.resources[0].devices[1]", "malformed UUID", 0}},
		{"MIG under MPS", RenderOptions{Replicas: 2, MPS: true, ResourceName: "nvidia.com/mig-1g.10gb"},
			want{"sharing.mps.resources[0].name", "MPS can share only full GPUs", 0}},
		{"foreign resource", RenderOptions{Replicas: 2, ResourceName: "amd.com/gpu"}, want{"sharing.timeSlicing.resources[0].name", "not an nvidia.com resource", 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Render(tt.opts)
			if c != nil {
				t.Errorf("Render returned a config with its error")
			}
			var errs ValidationErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Render error %v does not wrap ValidationErrors", err)
			}
			expectErrors(t, errs, tt.want)
		})
	}
}

func TestRenderConfigMap(t *testing.T) {
	cm, err := RenderConfigMap(RenderOptions{Replicas: 8, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Name != DefaultConfigMapName || cm.Namespace != DefaultNamespace {
		t.Errorf("ConfigMap %s/%s, want %s/%s", cm.Namespace, cm.Name, DefaultNamespace, DefaultConfigMapName)
	}
	if got, want := cm.Data[DefaultConfigMapKey], string(readTestdata(t, "seed.yaml")); got != want {
		t.Errorf("data[%q] =\n%s\nwant the seed:\n%s", DefaultConfigMapKey, got, want)
	}
	out, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "configmap", out)

	custom, err := RenderConfigMap(RenderOptions{Replicas: 2, MPS: true, ConfigMapName: "plugin-configs", Namespace: "nvidia", Key: "mps"})
	if err != nil {
		t.Fatal(err)
	}
	if custom.Name != "plugin-configs" || custom.Namespace != "nvidia" || len(custom.Data) != 1 || custom.Data["mps"] == "" {
		t.Errorf("custom placement ignored: %+v", custom.ObjectMeta)
	}
}

func TestRenderConfigMapRejectsBadPlacement(t *testing.T) {
	_, err := RenderConfigMap(RenderOptions{Replicas: 2, ConfigMapName: "Bad_Name", Namespace: "kube.system", Key: "config yaml"})
	if err == nil {
		t.Fatal("RenderConfigMap accepted an invalid name, namespace and key")
	}
	for _, fragment := range []string{`ConfigMap name "Bad_Name"`, `namespace "kube.system"`, `ConfigMap key "config yaml"`} {
		if !strings.Contains(err.Error(), fragment) {
			t.Errorf("error does not mention %s:\n%v", fragment, err)
		}
	}
	// Placement is checked before the config: both kinds of problem are not mixed.
	if _, err := RenderConfigMap(RenderOptions{Replicas: 1}); err == nil {
		t.Error("RenderConfigMap accepted replicas: 1")
	}
}

func TestFromConfigMap(t *testing.T) {
	seed := string(readTestdata(t, "seed.yaml"))
	meta := metav1.ObjectMeta{Name: DefaultConfigMapName, Namespace: DefaultNamespace}
	tests := []struct {
		name    string
		cm      *corev1.ConfigMap
		key     string
		wantErr string
	}{
		{"the only key", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"config.yaml": seed}}, "", ""},
		{"binary data", &corev1.ConfigMap{ObjectMeta: meta, BinaryData: map[string][]byte{"config": []byte(seed)}}, "", ""},
		{"named key among several", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"default": seed, "other": "version: v2\n"}}, "default", ""},
		{"several keys", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"default": seed, "a100": seed}}, "",
			`has 2 keys ("a100", "default"): name the one to read; without a node label or config.default the plugin reads "default"`},
		{"missing key", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"default": seed}}, "config",
			`kube-system/nvidia-device-plugin-config has no key "config" (keys: "default")`},
		{"no data", &corev1.ConfigMap{ObjectMeta: meta}, "", "has no data"},
		{"nil", nil, "", "nil ConfigMap"},
		{"invalid content", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"default": "version: v2\n"}}, "",
			`key "default":` + "\n" + `version (line 1): unknown version "v2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromConfigMap(tt.cm, tt.key)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.SharedResources(); len(got) != 1 || got[0].Replicas != 8 {
					t.Errorf("SharedResources = %+v, want the seed's", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFromConfigMapWrapsValidationErrors(t *testing.T) {
	cm := &corev1.ConfigMap{Data: map[string]string{"default": sliced("      - name: nvidia.com/gpu\n        replicas: 1\n")}}
	_, err := FromConfigMap(cm, "")
	var fe FieldError
	if !errors.As(err, &fe) || fe.Path != "sharing.timeSlicing.resources[0].replicas" || fe.Line != 6 {
		t.Errorf("errors.As(FieldError) = %+v from %v", fe, err)
	}
}

func TestMarshal(t *testing.T) {
	if _, err := Marshal(nil); err == nil {
		t.Error("Marshal(nil) succeeded")
	}
	out, err := Marshal(&Config{})
	if err != nil || string(out) != "version: v1\n" {
		t.Errorf("Marshal(empty) = %q, %v; want version: v1", out, err)
	}
	// Every field the plugin knows, in its order: Marshal then Parse must be
	// the identity.
	full := mustParse(t, string(readTestdata(t, "full.yaml")))
	out, err = Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "marshal-full", out)
	if back := mustParse(t, string(out)); !reflect.DeepEqual(back, full) {
		t.Errorf("Parse(Marshal(c)) = %+v, want %+v", back, full)
	}
}

// The JSON tags must be the plugin's: it reads the file with sigs.k8s.io/yaml,
// that is through encoding/json.
func TestJSONMatchesThePlugin(t *testing.T) {
	want := `{"version":"v1","sharing":{"timeSlicing":{"renameByDefault":true,"failRequestsGreaterThanOne":false,"resources":[{"name":"nvidia.com/gpu","replicas":8}]}}}`
	c := mustParse(t, string(readTestdata(t, "seed.yaml")))
	got, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("json.Marshal(seed) =\n%s\nwant\n%s", got, want)
	}

	doc := readTestdata(t, "full.yaml")
	var viaJSON Config
	if err := yaml.UnmarshalStrict(doc, &viaJSON); err != nil {
		t.Fatalf("sigs.k8s.io/yaml: %v", err)
	}
	if full := mustParse(t, string(doc)); !reflect.DeepEqual(&viaJSON, full) {
		t.Errorf("JSON decoding = %+v, want %+v", &viaJSON, full)
	}
}

func TestDevicesForms(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want Devices
		yaml string
	}{
		{"all", "all", Devices{All: true}, "all\n"},
		{"count", 2, Devices{Count: 2}, "2\n"},
		{"list", []any{0, "1:0", "GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c"},
			Devices{List: []string{"0", "1:0", "GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c"}},
			"[0, \"1:0\", GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c]\n"},
		{"JSON number", float64(3), Devices{Count: 3}, "3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Devices
			if err := d.fromValue(tt.in); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d, tt.want) {
				t.Errorf("fromValue = %+v, want %+v", d, tt.want)
			}
			out, err := Marshal(&Config{Sharing: Sharing{TimeSlicing: &ReplicatedResources{
				Resources: []ReplicatedResource{{Name: DefaultResourceName, Devices: &d, Replicas: 2}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "devices: "+tt.yaml) {
				t.Errorf("Marshal wrote\n%s\nwant devices: %s", out, tt.yaml)
			}
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back Devices
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, d) {
				t.Errorf("JSON round trip of %s = %+v, %v", b, back, err)
			}
		})
	}
	var d Devices
	if err := json.Unmarshal([]byte(`"some"`), &d); err == nil {
		t.Error(`json.Unmarshal("some") succeeded`)
	}
}
