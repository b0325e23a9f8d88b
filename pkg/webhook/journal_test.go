package webhook

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
)

// A journal that cannot be written: the decisions stay pending, counted
// once however often they repeat, each failed write is counted, and the
// failure is logged once, with the fix.
func TestGateJournalWriteFailure(t *testing.T) {
	// An API server that is not there.
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m := NewMetrics()
	w := newGateJournal(cs, store.Ref{Namespace: "gpu-system", Name: journal.GateName}, 0, m, slog.New(slog.NewTextHandler(&log, nil)))
	denied := journal.Entry{Action: journal.ActionDenied, Workload: vllmRef, By: journal.ByGate, Message: "protected deployment media/plex is unhealthy"}
	ctx := context.Background()
	for i := range 3 {
		denied.At = time.Date(2026, 12, 4, 21, 0, i, 0, time.UTC)
		w.record(denied)
		if w.flush(ctx) {
			t.Fatal("flush reported success with no API server")
		}
	}
	if n := len(w.pending.History); n != 1 || w.pending.History[0].Times() != 3 {
		t.Errorf("pending %+v, want the one denial, 3 times", w.pending.History)
	}
	if got := testutil.ToFloat64(m.gateJournalWrites.WithLabelValues("error")); got != 3 {
		t.Errorf("failed writes counted %v, want 3", got)
	}
	if n := strings.Count(log.String(), "not written to its journal"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "grant the webhook's ServiceAccount get and update on configmap gpu-system/"+journal.GateName) {
		t.Errorf("the log does not say what to grant:\n%s", log.String())
	}
}
