package journal

import (
	"fmt"
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
		{name: "held", data: map[string]string{KeyHeld: "{"}, want: "key held.json is not a gpuslice journal's JSON"},
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

func TestJournalAddCoalesces(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	denied := func(at time.Duration) Entry {
		return Entry{At: t0.Add(at), Action: ActionDenied, Workload: vllm, By: ByGate, Message: "protected deployment media/plex is unhealthy"}
	}
	type want struct {
		at, first time.Duration
		count     int
	}
	for _, tc := range []struct {
		name  string
		add   []Entry
		want  []want // newest first
		check func(t *testing.T, got []Entry)
	}{
		{
			name: "a retried denial is one entry with its count and first and last time",
			add:  []Entry{denied(0), denied(10 * time.Second), denied(40 * time.Minute), denied(80 * time.Minute)},
			want: []want{{at: 80 * time.Minute, first: 0, count: 4}},
		},
		{
			name: "a repeat after a pause longer than CoalesceWithin is a new entry",
			add:  []Entry{denied(0), denied(CoalesceWithin + time.Minute)},
			want: []want{{at: CoalesceWithin + time.Minute, first: CoalesceWithin + time.Minute, count: 1}, {at: 0, first: 0, count: 1}},
		},
		{
			name: "another message is another decision",
			add:  []Entry{denied(0), func() Entry { e := denied(time.Second); e.Message = "2 shares free, 4 requested"; return e }()},
			want: []want{{at: time.Second, first: time.Second, count: 1}, {at: 0, first: 0, count: 1}},
		},
		{
			name: "batches from two writers add up, whatever their order",
			add: []Entry{
				{At: t0.Add(time.Minute), First: t0, Count: 3, Action: ActionDenied, Workload: vllm, By: ByGate, Message: "protected deployment media/plex is unhealthy"},
				{At: t0.Add(30 * time.Second), First: t0.Add(-time.Minute), Count: 2, Action: ActionDenied, Workload: vllm, By: ByGate, Message: "protected deployment media/plex is unhealthy"},
			},
			want: []want{{at: time.Minute, first: -time.Minute, count: 5}},
		},
		{
			name: "an older decision added later goes in its place by time",
			add: []Entry{
				denied(time.Hour),
				{At: t0.Add(2 * time.Hour), Action: ActionBreakGlass, Workload: vllm, By: ByAdmit, Reason: "demo"},
				{At: t0, Action: ActionBreakGlass, Workload: vllm, By: ByGate, Reason: "demo"},
			},
			want: []want{{at: 2 * time.Hour, count: 1, first: 2 * time.Hour}, {at: time.Hour, first: time.Hour, count: 1}, {at: 0, first: 0, count: 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := New()
			for _, e := range tc.add {
				j.Add(e)
			}
			if len(j.History) != len(tc.want) {
				t.Fatalf("%d entries, want %d: %+v", len(j.History), len(tc.want), j.History)
			}
			for i, w := range tc.want {
				e := j.History[i]
				if !e.At.Equal(t0.Add(w.at)) || !e.FirstAt().Equal(t0.Add(w.first)) || e.Times() != w.count {
					t.Errorf("entry %d: at %s first %s %d times; want at %s first %s %d times", i, e.At, e.FirstAt(), e.Times(), t0.Add(w.at), t0.Add(w.first), w.count)
				}
			}
		})
	}
}

func TestJournalAddBounded(t *testing.T) {
	j := New()
	for i := range MaxEntries + 20 {
		j.Add(Entry{At: time.Unix(int64(i), 0).UTC(), Action: ActionDenied, Workload: workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: fmt.Sprint("w", i)}})
	}
	if len(j.History) != MaxEntries || !j.History[0].At.Equal(time.Unix(MaxEntries+19, 0)) {
		t.Errorf("%d entries, newest %s: want %d, the oldest dropped", len(j.History), j.History[0].At, MaxEntries)
	}
}
