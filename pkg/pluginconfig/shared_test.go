package pluginconfig

import (
	"reflect"
	"testing"
)

func TestSharedResources(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []SharedResource
	}{
		{"seed: renamed by default", string(readTestdata(t, "seed.yaml")), []SharedResource{{
			Name: "nvidia.com/gpu.shared", Original: "nvidia.com/gpu", Replicas: 8, Strategy: StrategyTimeSlicing, Renamed: true,
		}}},
		{"not renamed", sliced("      - name: nvidia.com/gpu\n        replicas: 4\n"), []SharedResource{{
			Name: "nvidia.com/gpu", Original: "nvidia.com/gpu", Replicas: 4, Strategy: StrategyTimeSlicing,
		}}},
		{"bare name gets the prefix", sliced("      - name: gpu\n        replicas: 4\n"), []SharedResource{{
			Name: "nvidia.com/gpu", Original: "nvidia.com/gpu", Replicas: 4, Strategy: StrategyTimeSlicing,
		}}},
		{"explicit rename equal to the default",
			"version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    failRequestsGreaterThanOne: true\n    resources:\n      - {name: nvidia.com/gpu, rename: nvidia.com/gpu.shared, replicas: 2}\n",
			[]SharedResource{{
				Name: "nvidia.com/gpu.shared", Original: "nvidia.com/gpu", Replicas: 2, Strategy: StrategyTimeSlicing, Renamed: true, FailRequestsGreaterThanOne: true,
			}}},
		{"several resources",
			"version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n      - {name: nvidia.com/mig-1g.10gb, replicas: 2}\n",
			[]SharedResource{
				{Name: "nvidia.com/gpu.shared", Original: "nvidia.com/gpu", Replicas: 4, Strategy: StrategyTimeSlicing, Renamed: true},
				{Name: "nvidia.com/mig-1g.10gb.shared", Original: "nvidia.com/mig-1g.10gb", Replicas: 2, Strategy: StrategyTimeSlicing, Renamed: true},
			}},
		{"MPS fails requests greater than one by default",
			"version: v1\nsharing:\n  mps:\n    renameByDefault: true\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n",
			[]SharedResource{{
				Name: "nvidia.com/gpu.shared", Original: "nvidia.com/gpu", Replicas: 4, Strategy: StrategyMPS, Renamed: true, FailRequestsGreaterThanOne: true,
			}}},
		{"MPS relaxed explicitly",
			"version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n",
			[]SharedResource{{
				Name: "nvidia.com/gpu", Original: "nvidia.com/gpu", Replicas: 4, Strategy: StrategyMPS,
			}}},
		{"no sharing", "version: v1\nflags:\n  migStrategy: none\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.doc).SharedResources()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SharedResources =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// SharedResources reports what the plugin does even for configs Validate
// rejects: the ledger must match the node, not the file.
func TestSharedResourcesFollowsThePlugin(t *testing.T) {
	rr := func(renameByDefault bool, rename string) *ReplicatedResources {
		return &ReplicatedResources{
			RenameByDefault: ptr(renameByDefault),
			Resources:       []ReplicatedResource{{Name: DefaultResourceName, Rename: rename, Replicas: 2}},
		}
	}
	tests := []struct {
		name       string
		sharing    Sharing
		advertised string
		strategy   string
	}{
		{"rename without renameByDefault is dropped", Sharing{TimeSlicing: rr(false, "nvidia.com/gpu.shared")}, "nvidia.com/gpu", StrategyTimeSlicing},
		{"renameByDefault overrides rename", Sharing{TimeSlicing: rr(true, "nvidia.com/custom")}, "nvidia.com/gpu.shared", StrategyTimeSlicing},
		{"MPS wins over time-slicing", Sharing{TimeSlicing: rr(false, ""), MPS: rr(true, "")}, "nvidia.com/gpu.shared", StrategyMPS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Version: Version, Sharing: tt.sharing}
			got := c.SharedResources()
			if len(got) != 1 || got[0].Name != tt.advertised || got[0].Strategy != tt.strategy {
				t.Errorf("SharedResources = %+v, want %s via %s", got, tt.advertised, tt.strategy)
			}
			if c.Sharing.Strategy() != tt.strategy {
				t.Errorf("Strategy() = %s, want %s", c.Sharing.Strategy(), tt.strategy)
			}
		})
	}
	var nilConfig *Config
	if got := nilConfig.SharedResources(); got != nil {
		t.Errorf("nil config: %+v", got)
	}
	if got := (Sharing{TimeSlicing: &ReplicatedResources{}}).Strategy(); got != StrategyNone {
		t.Errorf("Strategy() without resources = %s, want %s", got, StrategyNone)
	}
}
