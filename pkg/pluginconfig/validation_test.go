package pluginconfig

import (
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/ledger"
)

func TestNoteMultiShare(t *testing.T) {
	report := &ledger.Report{Nodes: []ledger.NodeReport{{Name: "homelabai", Workloads: []ledger.Workload{
		{Namespace: "ai", Name: "ollama", Resource: "nvidia.com/gpu.shared", Shares: 1, Pods: 1},
		{Namespace: "ai", Name: "whisper", Resource: "nvidia.com/gpu.shared", Shares: 2, Pods: 1},
		{Namespace: "ai", Name: "tts", Resource: "nvidia.com/gpu.shared", Shares: 2, Pods: 2},
	}}}}
	for _, tc := range []struct {
		name   string
		config string
		multi  []MultiShare
		want   []string // substrings of the one note; none: no note
	}{
		{name: "seed from the cluster: Whisper named", config: "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - {name: nvidia.com/gpu, replicas: 8}\n",
			multi: MultiShares(report), want: []string{"nvidia.com/gpu.shared: a pod may request more than one share", "not more time", "(ai/whisper asks 2)", "failRequestsGreaterThanOne: true"}},
		{name: "a file: the same note, nobody named", config: "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n",
			want: []string{"nvidia.com/gpu: a pod may request more than one share"}},
		{name: "multi-share requests refused: nothing to say", config: "version: v1\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: true\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n"},
		{name: "MPS: replicas are real fractions", config: "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.config))
			v, verr := NewValidation("c.yaml", cfg, err)
			if verr != nil || !v.Valid {
				t.Fatalf("%v %+v", verr, v)
			}
			v.NoteMultiShare(tc.multi)
			if len(tc.want) == 0 {
				if len(v.Notes) != 0 {
					t.Errorf("notes %q, want none", v.Notes)
				}
				return
			}
			if len(v.Notes) != 1 {
				t.Fatalf("notes %q, want one", v.Notes)
			}
			for _, w := range tc.want {
				if !strings.Contains(v.Notes[0], w) {
					t.Errorf("note lacks %q: %s", w, v.Notes[0])
				}
			}
		})
	}
}
