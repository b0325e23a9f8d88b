package inject

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const header = "apiVersion: gpuslice.io/v1alpha1\nkind: InjectorConfig\n"

func TestLoadExampleConfig(t *testing.T) {
	cfg := exampleConfig(t)
	if got, want := cfg.ProfileNames(), []string{"intel-qsv", "nvidia", "nvidia-tools", "nvidia1"}; !slices.Equal(got, want) {
		t.Errorf("profiles = %q, want %q", got, want)
	}
	if got := cfg.ExcludedNamespaces; !slices.Equal(got, []string{"kube-system", "gpu-system"}) {
		t.Errorf("excluded = %q", got)
	}
	if !reflect.DeepEqual(cfg.Profiles[0], builtinProfile()) {
		t.Errorf("built-in profile not first/unchanged: %+v", cfg.Profiles[0])
	}
	devs := map[string]Device{}
	for _, p := range cfg.Profiles {
		for _, d := range p.Devices {
			devs[d.HostPath] = d
		}
	}
	for _, p := range []string{"/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia1", "/dev/dri"} {
		if d, ok := devs[p]; !ok || d.MountPath != p {
			t.Errorf("device %s = %+v, want it with mountPath defaulted", p, d)
		}
	}
	if typ := devs["/dev/dri"].Type; typ == nil || *typ != corev1.HostPathDirectory {
		t.Errorf("/dev/dri type = %v", typ)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	charDev := corev1.HostPathCharDev
	cases := []struct {
		name string
		body string
		want func(*Config)
	}{
		{"header only is the default config", "", func(*Config) {}},
		{"explicit empty lists mean none", "excludedNamespaces: []\nhybrid: {env: {}}\n", func(c *Config) {
			c.ExcludedNamespaces, c.Hybrid.Env = []string{}, map[string]string{}
		}},
		{"hybrid resource only keeps default env", "hybrid: {resourceName: example.com/vgpu}\n", func(c *Config) {
			c.Hybrid.ResourceName = "example.com/vgpu"
		}},
		{"profileNamespaces limits the built-in profile", "profileNamespaces: {nvidia: [media, ai-dev]}\n", func(c *Config) {
			c.Profiles[0].Namespaces = []string{"media", "ai-dev"}
		}},
		{"hybrid runtime class", "hybrid: {runtimeClassName: nvidia-cdi}\n", func(c *Config) {
			rc := "nvidia-cdi"
			c.Hybrid.RuntimeClassName = &rc
		}},
		{"an empty hybrid runtime class means none", "hybrid: {runtimeClassName: \"\"}\n", func(c *Config) {
			rc := ""
			c.Hybrid.RuntimeClassName = &rc
		}},
		{"a file profile named nvidia replaces the built-in", `profiles:
- name: nvidia
  devices: [{name: nvidia0, hostPath: /dev/nvidia0, type: CharDevice}, {name: ctl, hostPath: /dev/nvidiactl, mountPath: /dev/ctl, type: ""}]
  runtimeClassName: nvidia-cdi
`, func(c *Config) {
			c.Profiles = []Profile{{Name: "nvidia", RuntimeClassName: "nvidia-cdi", Devices: []Device{
				{Name: "nvidia0", HostPath: "/dev/nvidia0", MountPath: "/dev/nvidia0", Type: &charDev},
				{Name: "ctl", HostPath: "/dev/nvidiactl", MountPath: "/dev/ctl"},
			}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(header+tc.body), "gpu-system")
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig("gpu-system")
			tc.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDefaultConfigExcludes(t *testing.T) {
	for ns, want := range map[string][]string{
		"gpu-system":  {"kube-system", "gpu-system"},
		"kube-system": {"kube-system"},
		"":            {"kube-system"},
	} {
		if got := DefaultConfig(ns).ExcludedNamespaces; !slices.Equal(got, want) {
			t.Errorf("DefaultConfig(%q) excludes %q, want %q", ns, got, want)
		}
	}
}

// profile wraps device lines into a one-profile config body.
func profile(name, extra string, devices ...string) string {
	return "profiles:\n- name: " + name + "\n" + extra + "  devices:\n" + "    - " + strings.Join(devices, "\n    - ") + "\n"
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		yaml   string // without the header unless it tests the header
		errors []string
	}{
		{"wrong apiVersion and missing kind", "apiVersion: gpuslice.io/v1\n", []string{
			`apiVersion: "gpuslice.io/v1" is not supported; set it to "gpuslice.io/v1alpha1"`,
			`kind: missing; set it to "InjectorConfig"`,
		}},
		{"misspelt top-level field", header + "profile: []\n", []string{`profile: unknown field; did you mean "profiles"?`}},
		{"wrong case is misspelt", header + profile("a", "", "{name: dri, hostpath: /dev/dri}"), []string{
			`profiles[0].devices[0].hostpath: unknown field; did you mean "hostPath"?`,
			`profiles[0].devices[0].hostPath: missing`,
		}},
		{"unknown field without a guess", header + profile("a", "", "{name: dri, hostPath: /dev/dri, readOnly: true}"), []string{
			`profiles[0].devices[0].readOnly: unknown field; remove it (known fields here: name, hostPath, mountPath, type)`,
		}},
		{"unknown hybrid field", header + "hybrid: {resource: x}\n", []string{`hybrid.resource: unknown field; did you mean "resourceName"?`}},
		{"profile name", header + profile("Intel_QSV", "", "{name: dri, hostPath: /dev/dri}"), []string{
			`profiles[0].name: "Intel_QSV" is not a valid profile name`, `write it as "intel-qsv"`,
		}},
		{"missing profile name", header + profile("", "", "{name: dri, hostPath: /dev/dri}"), []string{`profiles[0].name: missing`}},
		{"duplicate profile", header + "profiles:\n- {name: a, devices: [{name: x, hostPath: /dev/x}]}\n- {name: a, devices: [{name: x, hostPath: /dev/x}]}\n",
			[]string{`profiles[1].name: "a" is already used by profiles[0]`}},
		{"no devices", header + "profiles:\n- {name: a}\n- {name: b, devices: []}\n", []string{
			`profiles[0].devices: no devices`, `profiles[1].devices: no devices`,
		}},
		{"volume name", header + profile("a", "", "{name: DRI.card, hostPath: /dev/dri}"), []string{
			`profiles[0].devices[0].name: "DRI.card" is not a valid volume name`,
		}},
		{"relative hostPath", header + profile("a", "", "{name: dri, hostPath: dev/dri}"), []string{
			`profiles[0].devices[0].hostPath: "dev/dri" is not absolute; write it as "/dev/dri"`,
		}},
		{"unclean paths", header + profile("a", "", "{name: dri, hostPath: /dev//dri/, mountPath: /dev/./dri}"), []string{
			`profiles[0].devices[0].hostPath: "/dev//dri/" is not clean; write it as "/dev/dri"`,
			`profiles[0].devices[0].mountPath: "/dev/./dri" is not clean; write it as "/dev/dri"`,
		}},
		{"root paths", header + profile("a", "", "{name: root, hostPath: /, mountPath: /}"), []string{
			`profiles[0].devices[0].hostPath: "/" is not allowed`, `profiles[0].devices[0].mountPath: "/" is not allowed`,
		}},
		{"relative mountPath", header + profile("a", "", "{name: dri, hostPath: /dev/dri, mountPath: dri}"), []string{
			`profiles[0].devices[0].mountPath: "dri" is not absolute; write it as "/dri"`,
		}},
		{"hostPath types", header + profile("a", "", "{name: x, hostPath: /dev/x, type: chardevice}", "{name: w, hostPath: /dev/w, type: Pipe}"), []string{
			`profiles[0].devices[0].type: "chardevice" is not a hostPath type; write it as "CharDevice"`,
			`profiles[0].devices[1].type: "Pipe" is not a hostPath type; use one of DirectoryOrCreate, Directory,`,
		}},
		{"duplicates within a profile", header + profile("a", "", "{name: x, hostPath: /dev/x}", "{name: x, hostPath: /dev/x}", "{name: z, hostPath: /dev/z, mountPath: /dev/x}"), []string{
			`profiles[0].devices[1].name: "x" is also used by devices[0]`,
			`profiles[0].devices[1].hostPath: "/dev/x" is also used by devices[0]`,
			`profiles[0].devices[1].mountPath: "/dev/x" is also used by devices[0]`,
			`profiles[0].devices[2].mountPath: "/dev/x" is also used by devices[0]`,
		}},
		{"runtime class and namespaces", header + profile("a", "  runtimeClassName: NVIDIA_rc\n  namespaces: [media, Media_2]\n", "{name: x, hostPath: /dev/x}"), []string{
			`profiles[0].runtimeClassName: "NVIDIA_rc" is not a valid runtime class name`, `write it as "nvidia-rc"`,
			`profiles[0].namespaces[1]: "Media_2" is not a valid namespace`,
		}},
		{"excluded namespaces", header + "excludedNamespaces: [kube-system, \"\", GPU]\n", []string{
			`excludedNamespaces[1]: missing`, `excludedNamespaces[2]: "GPU" is not a valid namespace`, `write it as "gpu"`,
		}},
		{"resource name without domain", header + "hybrid: {resourceName: gpu}\n", []string{`hybrid.resourceName: "gpu" has no domain`}},
		{"invalid resource name", header + "hybrid: {resourceName: nvidia.com/gpu shared}\n", []string{`hybrid.resourceName: "nvidia.com/gpu shared" is not a qualified resource name`}},
		{"hybrid runtime class", header + "hybrid: {runtimeClassName: NVIDIA}\n", []string{
			`hybrid.runtimeClassName: "NVIDIA" is not a valid runtime class name; write it as "nvidia"`,
		}},
		{"NVIDIA_VISIBLE_DEVICES in the hybrid env", header + "hybrid: {env: {NVIDIA_VISIBLE_DEVICES: all}}\n", []string{
			`hybrid.env.NVIDIA_VISIBLE_DEVICES: would override the GPU the device plugin allocates to each pod with shares`, "remove it",
		}},
		{"host paths outside /dev", header + profile("a", "", "{name: etc, hostPath: /etc}", "{name: sock, hostPath: /run/containerd/containerd.sock}", "{name: devx, hostPath: /devices}", "{name: dev, hostPath: /dev}"), []string{
			`profiles[0].devices[0].hostPath: "/etc" is not a device; only paths under /dev/ may be injected`,
			`profiles[0].devices[1].hostPath: "/run/containerd/containerd.sock" is not a device`,
			`profiles[0].devices[2].hostPath: "/devices" is not a device`,
			`profiles[0].devices[3].hostPath: "/dev" is not a device`,
		}},
		{"profileNamespaces", header + profile("qsv", "  namespaces: [media]\n", "{name: dri, hostPath: /dev/dri}") +
			"profileNamespaces: {nvdia: [media], qsv: [media], nvidia: [Media]}\n", []string{
			`profileNamespaces.nvdia: no profile "nvdia"; known profiles: nvidia, qsv`,
			`profileNamespaces.qsv: profile "qsv" also lists namespaces in profiles[].namespaces; keep one of the two`,
			`profileNamespaces.nvidia[0]: "Media" is not a valid namespace; write it as "media"`,
		}},
		{"empty profileNamespaces entry", header + "profileNamespaces: {nvidia: []}\n", []string{
			`profileNamespaces.nvidia: empty; list the namespaces that may use profile "nvidia"`,
		}},
		{"env names", header + "hybrid: {env: {1BAD: x, BAD-NAME: v, GOOD: z}}\n", []string{
			`hybrid.env.1BAD: "1BAD" is not a valid variable name`, `hybrid.env.BAD-NAME: "BAD-NAME" is not a valid variable name`,
		}},
		{"volume name means another device in another profile", header + profile("b", "", "{name: nvidiactl, hostPath: /dev/other}"), []string{
			`profiles[0].devices[0].name: volume name "nvidiactl" already means /dev/nvidiactl in profile "nvidia"`,
		}},
		{"mount path receives another device in another profile", header + profile("b", "", "{name: other, hostPath: /dev/other, mountPath: /dev/nvidia0}"), []string{
			`profiles[0].devices[0].mountPath: "/dev/nvidia0" already receives /dev/nvidia0 in profile "nvidia"`,
		}},
		{"type mismatch", header + "profiles:\n- {name: a, devices: {name: x}}\n", []string{"decode:", "cannot unmarshal"}},
		{"unquoted number for a string", header + "hybrid: {env: {X: 1}}\n", []string{"decode:", "quote string values"}},
		{"duplicate YAML key", header + "kind: InjectorConfig\n", []string{"parse YAML:", `"kind" already set`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.yaml), "gpu-system")
			if err == nil {
				t.Fatalf("want errors, got config %+v", cfg)
			}
			for _, want := range tc.errors {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestParseConfigReportsEveryProblem checks that one pass reports all
// problems, one joined error each.
func TestParseConfigReportsEveryProblem(t *testing.T) {
	body := "apiVersion: v1\nkind: InjectorConfig\nexcludedNamespaces: [Kube]\n" +
		profile("a", "  namespaces: [x_y]\n", "{name: dri, hostPath: dev/dri, type: dir}") +
		"hybrid: {resourceName: gpu, env: {9X: v}}\n"
	_, err := ParseConfig([]byte(body), "gpu-system")
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("want a joined error, got %T: %v", err, err)
	}
	want := []string{"apiVersion:", "excludedNamespaces[0]:", "profiles[0].devices[0].hostPath:", "profiles[0].devices[0].type:",
		"profiles[0].namespaces[0]:", "hybrid.resourceName:", "hybrid.env.9X:"}
	var got []string
	for _, e := range joined.Unwrap() {
		got = append(got, strings.SplitAfter(e.Error(), ":")[0])
	}
	if !slices.Equal(got, want) {
		t.Errorf("reported fields\n got %q\nwant %q\n%v", got, want, err)
	}
}

func TestLoadConfigErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kind: Nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		_, err := LoadConfig(path, "gpu-system")
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadConfig(%s) error %v does not name the path", path, err)
		}
	}
	_, err := LoadConfig(filepath.Join(dir, "missing.yaml"), "gpu-system")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file error should wrap os.ErrNotExist: %v", err)
	}
}
