package pluginconfig

import (
	"reflect"
	"strings"
	"testing"
)

// sliced wraps resource entries in a minimal time-slicing config, so each
// case below shows only what it is about.
func sliced(entries string) string {
	return "version: v1\nsharing:\n  timeSlicing:\n    resources:\n" + entries
}

func TestParseReportsEachProblem(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want want
	}{
		// Document level.
		{"empty", "", want{"", "config is empty", 0}},
		{"comments only", "# nothing here\n", want{"", "config is empty", 0}},
		{"not a mapping", "- version: v1\n", want{"", "must be a mapping", 1}},
		{"second document", "version: v1\n---\nversion: v1\n", want{"", "second YAML document", 3}},
		{"tab indentation", "version: v1\nsharing:\n\ttimeSlicing: {}\n", want{"", "YAML does not allow tabs", 3}},
		{"unclosed flow list", "version: v1\nsharing:\n  timeSlicing:\n    resources: [\n", want{"", "YAML syntax error", 4}},
		{"missing colon space", "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault:true\n    resources: []\n", want{"", "or the line above", 5}},

		// Version.
		{"unknown version", "version: v2\n", want{"version", `unknown version "v2"`, 1}},
		{"numeric version", "version: 1\n", want{"version", "expected text, got the number 1", 1}},

		// Unknown, misspelt and misplaced fields.
		{"typo at top level", "version: v1\nsharnig: {}\n", want{"sharnig", `did you mean "sharing"?`, 2}},
		{"wrong case", "version: v1\nSharing: {}\n", want{"Sharing", "case-sensitive", 2}},
		{"field one level too high", "version: v1\nsharing:\n  timeSlicing:\n    replica: 8\n",
			want{"sharing.timeSlicing.replica", `did you mean "replicas"? It belongs under each entry of sharing.timeSlicing.resources`, 4}},
		{"typo in an entry", sliced("      - name: nvidia.com/gpu\n        replica: 8\n"),
			want{"sharing.timeSlicing.resources[0].replica", `did you mean "replicas"?`, 6}},
		{"section at the wrong level", "version: v1\ntimeSlicing:\n  resources: []\n",
			want{"timeSlicing", `"timeSlicing" belongs under sharing`, 2}},
		{"unknown flag", "version: v1\nflags:\n  frobnicate: true\n", want{"flags.frobnicate", "the fields allowed under flags are", 3}},
		{"unknown field says the plugin ignores it", "version: v1\nflags:\n  frobnicate: true\n", want{"flags.frobnicate", "silently ignore", 3}},
		{"duplicate key", "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    renameByDefault: false\n",
			want{"sharing.timeSlicing.renameByDefault", "set twice (first on line 4)", 5}},

		// Value types.
		{"scalar for a section", "version: v1\nsharing: yes\n", want{"sharing", "expected a mapping of fields", 2}},
		{"mapping for a list", "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      name: nvidia.com/gpu\n",
			want{"sharing.timeSlicing.resources", "expected a list", 5}},
		{"word for a boolean", "version: v1\nflags:\n  failOnInitError: sure\n", want{"flags.failOnInitError", `expected true or false, got the text "sure"`, 3}},
		{"YAML 1.1 boolean", "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: yes\n",
			want{"sharing.timeSlicing.renameByDefault", "YAML 1.1", 4}},
		{"quoted number", sliced("      - name: nvidia.com/gpu\n        replicas: \"8\"\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "remove the quotes: 8", 6}},
		{"fractional number", sliced("      - name: nvidia.com/gpu\n        replicas: 2.5\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "expected a whole number, got the number 2.5", 6}},
		{"no value", sliced("      - name: nvidia.com/gpu\n        replicas:\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "has no value", 6}},

		// Replicas.
		{"replicas missing", sliced("      - name: nvidia.com/gpu\n"), want{"sharing.timeSlicing.resources[0].replicas", "is missing", 5}},
		{"replicas one", sliced("      - name: nvidia.com/gpu\n        replicas: 1\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "must be at least 2, got 1", 6}},
		{"replicas zero", sliced("      - name: nvidia.com/gpu\n        replicas: 0\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "got 0", 6}},
		{"replicas negative", sliced("      - name: nvidia.com/gpu\n        replicas: -3\n"),
			want{"sharing.timeSlicing.resources[0].replicas", "got -3", 6}},

		// Resources to share.
		{"empty resource list", "version: v1\nsharing:\n  timeSlicing:\n    resources: []\n",
			want{"sharing.timeSlicing.resources", "lists no resource to share", 4}},
		{"no resource list", "version: v1\nsharing:\n  mps:\n    renameByDefault: true\n",
			want{"sharing.mps.resources", "lists no resource to share", 3}},
		{"empty section", "version: v1\nsharing:\n  timeSlicing:\n",
			want{"sharing.timeSlicing", "is empty", 3}},
		{"resource listed twice", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n      - name: gpu\n        replicas: 4\n"),
			want{"sharing.timeSlicing.resources[1].name", `"nvidia.com/gpu" is listed twice (first at resources[0])`, 7}},
		{"name missing", sliced("      - replicas: 2\n"), want{"sharing.timeSlicing.resources[0].name", "is missing", 5}},
		{"foreign vendor", sliced("      - name: amd.com/gpu\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].name", "is not an nvidia.com resource", 5}},
		{"invalid characters", sliced("      - name: nvidia.com/GPU_X\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].name", "is not a valid resource name", 5}},
		{"name too long", sliced("      - name: nvidia.com/" + strings.Repeat("a", 60) + "\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].name", "the plugin allows at most 63", 5}},
		{"resource typo", sliced("      - name: nvidia.com/gpus\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].name", `did you mean "nvidia.com/gpu"?`, 5}},
		{"shared name as the source", sliced("      - name: nvidia.com/gpu.shared\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].name", "write name: nvidia.com/gpu and set renameByDefault: true", 5}},
		{"MIG resource without mixed strategy",
			"version: v1\nflags:\n  migStrategy: single\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/mig-1g.10gb\n        replicas: 2\n",
			want{"sharing.timeSlicing.resources[0].name", "exists only with migStrategy mixed", 7}},
		{"MIG resource under MPS", "version: v1\nsharing:\n  mps:\n    resources:\n      - name: nvidia.com/mig-1g.10gb\n        replicas: 2\n",
			want{"sharing.mps.resources[0].name", "MPS can share only full GPUs", 5}},
		{"both strategies",
			"version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - {name: nvidia.com/gpu, replicas: 2}\n  mps:\n    resources:\n      - {name: nvidia.com/gpu, replicas: 2}\n",
			want{"sharing", "mutually exclusive and the plugin would silently use mps", 2}},

		// Rename.
		{"rename with renameByDefault",
			"version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - name: nvidia.com/gpu\n        rename: nvidia.com/shared-gpu\n        replicas: 2\n",
			want{"sharing.timeSlicing.resources[0].rename", `advertises "nvidia.com/gpu.shared" and overrides rename "nvidia.com/shared-gpu"`, 7}},
		{"rename without renameByDefault", sliced("      - name: nvidia.com/gpu\n        rename: nvidia.com/gpu.shared\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].rename", "set renameByDefault: true", 6}},
		{"invalid rename", sliced("      - name: nvidia.com/gpu\n        rename: Shared GPU\n        replicas: 2\n"),
			want{"sharing.timeSlicing.resources[0].rename", "is not a valid resource name", 6}},
		{"colliding rename",
			"version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        rename: nvidia.com/mig-1g.10gb\n        replicas: 2\n      - name: nvidia.com/mig-1g.10gb\n        replicas: 2\n",
			want{"sharing.timeSlicing.resources[0].rename", "collides with the name of sharing.timeSlicing.resources[1]", 8}},

		// Devices.
		{"devices word", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: some\n"),
			want{"sharing.timeSlicing.resources[0].devices", `the only word devices accepts is "all"`, 7}},
		{"devices mapping", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: {gpu: 0}\n"),
			want{"sharing.timeSlicing.resources[0].devices", "devices cannot be a mapping", 7}},
		{"devices boolean entry", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [true]\n"),
			want{"sharing.timeSlicing.resources[0].devices", "cannot be the boolean true", 7}},
		{"devices negative count", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: -1\n"),
			want{"sharing.timeSlicing.resources[0].devices", "count -1 is negative", 7}},
		{"devices zero count", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: 0\n"),
			want{"sharing.timeSlicing.resources[0].devices", "selects no GPU", 7}},
		{"devices empty list", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: []\n"),
			want{"sharing.timeSlicing.resources[0].devices", "the list is empty", 7}},
		{"devices negative index", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [-1]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "negative GPU index", 7}},
		{"devices bad GPU UUID", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [GPU-1234]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "malformed UUID", 7}},
		{"devices bad MIG UUID", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [MIG-GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "malformed UUID", 7}},
		{"devices lowercase prefix", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [gpu-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "write GPU-4cf8db2d", 7}},
		{"devices bad MIG index", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [\"0:x\"]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "malformed MIG index", 7}},
		{"devices garbage", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [first]\n"),
			want{"sharing.timeSlicing.resources[0].devices[0]", "not a GPU index, MIG index or UUID", 7}},
		{"devices duplicate", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [0, 1, \"0\"]\n"),
			want{"sharing.timeSlicing.resources[0].devices[2]", `"0" is listed twice (first at [0])`, 7}},
		{"devices indices and UUIDs", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [0, GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c]\n"),
			want{"sharing.timeSlicing.resources[0].devices", "mixes indices and UUIDs", 7}},
		{"devices GPUs and MIG devices", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [0, \"1:0\"]\n"),
			want{"sharing.timeSlicing.resources[0].devices", "mixes full GPUs and MIG devices", 7}},
		{"devices ignored by the plugin", sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: [0, 1]\n"),
			want{"sharing.timeSlicing.resources[0].devices", "shares every GPU", 7}},

		// Flags.
		{"MIG strategy", "version: v1\nflags:\n  migStrategy: Mixed\n", want{"flags.migStrategy", `case-sensitive: did you mean "mixed"?`, 3}},
		{"MIG strategy unknown", "version: v1\nflags:\n  migStrategy: all\n", want{"flags.migStrategy", `use one of "none", "single", "mixed"`, 3}},
		{"device ID strategy", "version: v1\nflags:\n  plugin:\n    deviceIDStrategy: uid\n",
			want{"flags.plugin.deviceIDStrategy", `did you mean "uuid"?`, 4}},
		{"device list strategy entry", "version: v1\nflags:\n  plugin:\n    deviceListStrategy: [envvar, volume-mount]\n",
			want{"flags.plugin.deviceListStrategy[1]", `did you mean "volume-mounts"?`, 4}},
		{"device list strategy type", "version: v1\nflags:\n  plugin:\n    deviceListStrategy: 3\n",
			want{"flags.plugin.deviceListStrategy", "expected text or a list of text", 4}},
		{"relative driver root", "version: v1\nflags:\n  nvidiaDriverRoot: run/nvidia/driver\n",
			want{"flags.nvidiaDriverRoot", "not an absolute path", 3}},
		{"sleep interval word", "version: v1\nflags:\n  gfd:\n    sleepInterval: soon\n", want{"flags.gfd.sleepInterval", `"soon" is not a duration`, 4}},
		{"sleep interval negative", "version: v1\nflags:\n  gfd:\n    sleepInterval: -5s\n", want{"flags.gfd.sleepInterval", "must be positive", 4}},

		// Sections the plugin parses and then drops.
		{"top-level resources", "version: v1\nresources:\n  gpus:\n    - pattern: \"*\"\n      name: gpu\n",
			want{"resources", "ignores the top-level resources section", 2}},
		{"resource pattern missing", "version: v1\nresources:\n  gpus:\n    - name: gpu\n",
			want{"resources.gpus[0].pattern", "is missing", 4}},
		{"IMEX channels", "version: v1\nimex:\n  channelIDs: [1, 2]\n", want{"imex.channelIDs", "only [] or [0]", 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectErrors(t, parseErrors(t, tt.doc), tt.want)
		})
	}
}

func TestParseAcceptsValidConfigs(t *testing.T) {
	tests := map[string]string{
		"seed":              string(readTestdata(t, "seed.yaml")),
		"version omitted":   "sharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n",
		"bare resource":     sliced("      - name: gpu\n        replicas: 4\n"),
		"devices all":       sliced("      - name: nvidia.com/gpu\n        replicas: 4\n        devices: all\n"),
		"MIG with mixed":    "version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/mig-2g.20gb\n        replicas: 2\n",
		"default rename":    "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - {name: nvidia.com/gpu, rename: nvidia.com/gpu.shared, replicas: 2}\n",
		"MPS relaxed":       "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n",
		"flags only":        "version: v1\nflags:\n  migStrategy: none\n  failOnInitError: true\n  nvidiaDriverRoot: /\n  plugin:\n    passDeviceSpecs: false\n    deviceListStrategy: envvar\n    deviceIDStrategy: uuid\n",
		"device list":       "version: v1\nflags:\n  plugin:\n    deviceListStrategy: [envvar, cdi-cri]\n",
		"gfd":               "version: v1\nflags:\n  gfd:\n    oneshot: false\n    sleepInterval: 60s\n",
		"IMEX":              "version: v1\nimex:\n  channelIDs: [0]\n  required: true\n",
		"empty flags":       "version: v1\nflags:\nsharing:\n",
		"JSON":              `{"version": "v1", "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 2}]}}}`,
		"anchors and alias": "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - &gpu {name: nvidia.com/gpu, replicas: 2}\n",
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, doc)
			if errs := Validate(c); errs != nil {
				t.Errorf("Validate after Parse: %v", errs)
			}
		})
	}
}

func TestParseSeed(t *testing.T) {
	c := mustParse(t, string(readTestdata(t, "seed.yaml")))
	want := &Config{
		Version: Version,
		Sharing: Sharing{TimeSlicing: &ReplicatedResources{
			RenameByDefault:            ptr(true),
			FailRequestsGreaterThanOne: ptr(false),
			Resources:                  []ReplicatedResource{{Name: DefaultResourceName, Replicas: 8}},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(seed) = %+v, want %+v", c, want)
	}
}

func TestParseReportsAllProblemsInLineOrder(t *testing.T) {
	doc := `version: v2
flags:
  migStrategy: Mixed
  failOnInitError: yes
sharing:
  timeSlicing:
    renameByDefualt: true
    resources:
      - name: nvidia.com/gpus
        replicas: "8"
        devices: [0, "0:1", GPU-bad, 0]
      - name: nvidia.com/gpu
        replicas: 1
        rename: nvidia.com/other
  mps:
    resources:
      - name: nvidia.com/gpu
        replicas: 4
`
	errs := parseErrors(t, doc)
	wants := []want{
		{"version", "unknown version", 1},
		{"flags.migStrategy", "did you mean", 3},
		{"flags.failOnInitError", "YAML 1.1", 4},
		{"sharing", "mutually exclusive", 5},
		{"sharing.timeSlicing.renameByDefualt", `did you mean "renameByDefault"?`, 7},
		{"sharing.timeSlicing.resources[0].name", `did you mean "nvidia.com/gpu"?`, 9},
		{"sharing.timeSlicing.resources[0].replicas", "remove the quotes", 10},
		{"sharing.timeSlicing.resources[0].devices[2]", "malformed UUID", 11},
		{"sharing.timeSlicing.resources[0].devices[3]", "listed twice", 11},
		{"sharing.timeSlicing.resources[0].devices", "mixes full GPUs and MIG devices", 11},
		{"sharing.timeSlicing.resources[0].devices", "shares every GPU", 11},
		{"sharing.timeSlicing.resources[1].replicas", "at least 2, got 1", 13},
		{"sharing.timeSlicing.resources[1].rename", "ignores per-resource rename", 14},
	}
	expectErrors(t, errs, wants...)
	if len(errs) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%v", len(errs), len(wants), errs)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Line < errs[i-1].Line {
			t.Errorf("problems not in line order: line %d after line %d", errs[i].Line, errs[i-1].Line)
		}
	}
}

// A problem already reported by the parser must not come back from the
// semantic checks in other words.
func TestParseDoesNotRepeatProblems(t *testing.T) {
	tests := map[string]struct {
		doc      string
		notAtAll string
	}{
		"typo hides missing":     {sliced("      - name: nvidia.com/gpu\n        replica: 8\n"), "sharing.timeSlicing.resources[0].replicas"},
		"bad type hides missing": {sliced("      - name: nvidia.com/gpu\n        replicas: eight\n"), ""},
		"bad devices shape":      {sliced("      - name: nvidia.com/gpu\n        replicas: 2\n        devices: some\n"), ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			errs := parseErrors(t, tt.doc)
			if len(errs) != 1 {
				t.Errorf("got %d problems, want 1:\n%v", len(errs), errs)
			}
			for _, e := range errs {
				if tt.notAtAll != "" && e.Path == tt.notAtAll {
					t.Errorf("unexpected problem: %v", e)
				}
			}
		})
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	gpu := func(r ReplicatedResource) *Config {
		return &Config{Version: Version, Sharing: Sharing{TimeSlicing: &ReplicatedResources{Resources: []ReplicatedResource{r}}}}
	}
	tests := []struct {
		name string
		cfg  *Config
		want want
	}{
		{"nil config", nil, want{"", "no config", 0}},
		{"replicas unset", gpu(ReplicatedResource{Name: DefaultResourceName}),
			want{"sharing.timeSlicing.resources[0].replicas", "is missing or empty", 0}},
		{"count and list", gpu(ReplicatedResource{Name: DefaultResourceName, Replicas: 2, Devices: &Devices{Count: 1, List: []string{"0"}}}),
			want{"sharing.timeSlicing.resources[0].devices", "sets both a count and a list", 0}},
		{"empty deviceListStrategy", &Config{Flags: Flags{Plugin: &PluginFlags{DeviceListStrategy: &StringList{}}}},
			want{"flags.plugin.deviceListStrategy", "lists no strategy", 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(tt.cfg)
			expectErrors(t, errs, tt.want)
			for _, e := range errs {
				if e.Line != 0 {
					t.Errorf("%s: line %d for a config without a document", e.Path, e.Line)
				}
			}
		})
	}
	if errs := Validate(&Config{}); errs != nil {
		t.Errorf("Validate(empty) = %v, want nil", errs)
	}
}
