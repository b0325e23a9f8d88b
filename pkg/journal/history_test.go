package journal

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestHistoryMergesNewestFirst(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	plex := workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
	at := func(h int, action string, ref workload.Ref, by string) Entry {
		return Entry{At: t0.Add(time.Duration(h) * time.Hour), Action: action, Workload: ref, By: by}
	}
	for _, tc := range []struct {
		name      string
		arbiter   []Entry // as stored, newest first
		gate      []Entry
		namespace string
		want      []string // "by action hour"
	}{
		{
			name:    "interleaved by time, who decided on each",
			arbiter: []Entry{at(5, ActionRestore, vllm, ""), at(2, ActionPreempt, vllm, "")},
			gate:    []Entry{at(4, ActionBreakGlass, vllm, ByAdmit), at(3, ActionDenied, vllm, ByGate), at(1, ActionDenied, vllm, ByGate)},
			want:    []string{"arbiter restore 5", "admit break-glass 4", "gate denied 3", "arbiter preempt 2", "gate denied 1"},
		},
		{
			name:    "the same time: the arbiter's first",
			arbiter: []Entry{at(1, ActionPreempt, vllm, "")},
			gate:    []Entry{at(1, ActionDenied, vllm, ByGate)},
			want:    []string{"arbiter preempt 1", "gate denied 1"},
		},
		{
			name: "only the gate's",
			gate: []Entry{at(1, ActionDenied, vllm, ByGate)},
			want: []string{"gate denied 1"},
		},
		{
			name:      "one namespace, and nothing before since (hour 1)",
			arbiter:   []Entry{at(2, ActionPreempt, plex, ""), at(0, ActionPreempt, vllm, "")},
			gate:      []Entry{at(3, ActionDenied, vllm, ByGate), at(2, ActionDenied, plex, ByGate)},
			namespace: "ai-dev",
			want:      []string{"gate denied 3"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := t0
			if tc.namespace != "" {
				since = t0.Add(time.Hour)
			}
			h := (&Journal{History: tc.arbiter}).Report("configmap gpu-system/a", since, tc.namespace)
			h.AddGate("configmap gpu-system/g", &Journal{History: tc.gate}, tc.namespace)
			var got []string
			for _, e := range h.Entries {
				got = append(got, fmt.Sprintf("%s %s %d", e.By, e.Action, int(e.At.Sub(t0).Hours())))
			}
			if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
				t.Errorf("entries %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHistoryTableShowsRepeats(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	h := New().Report("configmap gpu-system/a", t0, "")
	g := New()
	g.Add(Entry{At: t0.Add(time.Minute), First: t0, Count: 37, Action: ActionDenied, Workload: vllm, By: ByGate, Message: "protected deployment media/plex is unhealthy"})
	h.AddGate("configmap gpu-system/g", g, "")
	var out bytes.Buffer
	if err := h.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BY", "gate", "denied", "37 times since 2026-12-04T21:00:00Z: protected deployment media/plex is unhealthy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestHistoryTableNamesTheJournalsRead: with no decisions it says where
// it looked, naming only the journals that exist.
func TestHistoryTableNamesTheJournalsRead(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		arbiter, gate string
		want, wantNot string
	}{
		{name: "both", arbiter: "configmap gpu-system/a", gate: "configmap gpu-system/g", want: "in configmap gpu-system/a and configmap gpu-system/g."},
		{name: "arbiter only", arbiter: "configmap gpu-system/a", want: "in configmap gpu-system/a.", wantNot: " and "},
		{name: "gate only", gate: "configmap gpu-system/g", want: "in configmap gpu-system/g.", wantNot: " and "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New().Report(tc.arbiter, t0, "")
			if tc.gate != "" {
				h.AddGate(tc.gate, New(), "")
			}
			var out bytes.Buffer
			if err := h.WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) || (tc.wantNot != "" && strings.Contains(out.String(), tc.wantNot)) {
				t.Errorf("table %q, want %q in it", out.String(), tc.want)
			}
		})
	}
}
