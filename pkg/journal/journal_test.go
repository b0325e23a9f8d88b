package journal

import (
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

var vllm = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}

func TestJournalRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	j := New()
	j.Hold(Hold{Workload: vllm, Action: "scale-to-zero", Node: "homelabai", At: t0})
	j.Hold(Hold{Workload: vllm, Action: "scale-to-zero", Node: "homelabai", At: t0.Add(time.Minute)})
	for i := range 3 {
		j.Record(Entry{At: t0.Add(time.Duration(i) * time.Hour), Action: ActionPreempt, Workload: vllm})
	}
	data, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode("configmap gpuslice/gpuslice-arbiter-journal", data)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := back.Holds(vllm); !ok || len(back.Held) != 1 || !h.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("held %+v: want the one later hold of vLLM", back.Held)
	}
	since := back.Since(t0.Add(time.Hour))
	if len(since) != 2 || !since[0].At.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("since: %+v, want the two newest, newest first", since)
	}
	back.Release(vllm)
	if _, ok := back.Holds(vllm); ok {
		t.Error("released and still held")
	}
}

func TestJournalBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries int
		message int // bytes of each entry's message
		wantMax int
	}{
		{name: "by count", entries: MaxEntries + 50, message: 10, wantMax: MaxEntries},
		{name: "by bytes", entries: 300, message: 4 << 10, wantMax: MaxHistoryBytes / (4 << 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := New()
			for i := range tc.entries {
				j.Record(Entry{At: time.Unix(int64(i), 0).UTC(), Action: ActionRestore, Workload: vllm, Message: strings.Repeat("x", tc.message)})
			}
			data, err := j.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if n := len(data[KeyHistory]); n > MaxHistoryBytes {
				t.Errorf("history is %d bytes, over %d", n, MaxHistoryBytes)
			}
			back, err := Decode("cm", data)
			if err != nil {
				t.Fatal(err)
			}
			if len(back.History) == 0 || len(back.History) > tc.wantMax {
				t.Errorf("%d entries kept, want 1..%d", len(back.History), tc.wantMax)
			}
			if newest := back.History[0].At; !newest.Equal(time.Unix(int64(tc.entries-1), 0)) {
				t.Errorf("newest kept is %s: the oldest must go first", newest)
			}
		})
	}
}

func TestJournalDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data map[string]string
		want string
	}{
		{name: "held", data: map[string]string{KeyHeld: "{"}, want: "key held.json is not the arbiter's JSON"},
		{name: "history", data: map[string]string{KeyHistory: "[1,"}, want: "delete the key to start the history afresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("configmap gpuslice/j", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "configmap gpuslice/j") {
				t.Errorf("error %v, want it to name the ConfigMap and say %q", err, tc.want)
			}
		})
	}
}
