package webhook

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
)

// ManagedBy labels the gate's journal ConfigMap when the webhook creates it.
const ManagedBy = "gpuslice-webhook"

// DefaultJournalEvery is how often at most the webhook writes its
// journal: the decisions made meanwhile go in one write.
const DefaultJournalEvery = time.Second

// journalRetryAfter is how long a failed write waits before the next try
// when no new decision wakes the writer.
const journalRetryAfter = 30 * time.Second

// gateJournal writes the admission gate's decisions to the gate's
// journal (package journal) in the background: an admission only hands
// its decision over (record), so the journal never slows or fails one.
// Decisions wait in memory, repeats counted into one entry, until the
// next write; each replica writes its own and a lost race is retried on
// top of the other's (store.Append).
type gateJournal struct {
	client kubernetes.Interface
	ref    store.Ref
	every  time.Duration
	log    *slog.Logger
	writes *prometheus.CounterVec

	mu      sync.Mutex
	pending *journal.Journal
	wake    chan struct{}
	// failing is set from a failed write to the next that succeeds, so
	// the failure is logged once.
	failing bool
}

func newGateJournal(cs kubernetes.Interface, ref store.Ref, every time.Duration, m *Metrics, log *slog.Logger) *gateJournal {
	if every <= 0 {
		every = DefaultJournalEvery
	}
	return &gateJournal{client: cs, ref: ref, every: every, log: log, writes: m.gateJournalWrites, pending: journal.New(), wake: make(chan struct{}, 1)}
}

// record hands a decision to the writer; it never blocks on the API.
func (w *gateJournal) record(e journal.Entry) {
	w.mu.Lock()
	w.pending.Add(e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// start runs the writer until stop is called, which writes what is left
// and returns. ctx ending does not stop it: the server drains after that,
// still deciding.
func (w *gateJournal) start(ctx context.Context) (stop func()) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(runCtx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// run writes what was recorded, at most once per every, until ctx ends;
// then it writes what is left, briefly.
func (w *gateJournal) run(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			w.flush(final)
			cancel()
			return
		case <-w.wake:
		case <-retry:
		}
		retry = nil
		if !w.flush(ctx) {
			retry = time.After(journalRetryAfter)
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.every):
		}
	}
}

// flush writes the pending decisions; on failure they stay pending (the
// oldest beyond journal.MaxEntries dropped) for the next try.
func (w *gateJournal) flush(ctx context.Context) bool {
	w.mu.Lock()
	batch := w.pending.History
	w.pending.History = nil
	w.mu.Unlock()
	if len(batch) == 0 {
		return true
	}
	// Oldest first, as they were decided.
	slices.Reverse(batch)
	err := store.Append(ctx, w.client, w.ref, batch, ManagedBy)
	if err == nil {
		w.writes.WithLabelValues("success").Inc()
		if w.failing {
			w.failing = false
			w.log.Info("admission gate's journal written again", "journal", w.ref.String())
		}
		return true
	}
	w.writes.WithLabelValues("error").Inc()
	w.mu.Lock()
	for _, e := range batch {
		w.pending.Add(e)
	}
	w.mu.Unlock()
	if !w.failing {
		w.failing = true
		w.log.Error("admission gate's decisions not written to its journal; admissions go on, gpuslice history lacks them until it is writable",
			"journal", w.ref.String(), "error", err.Error(),
			"fix", "grant the webhook's ServiceAccount get and update on "+w.ref.String()+" and create on configmaps in "+w.ref.Namespace+" (the chart's webhook.admissionGate does)")
	}
	return false
}
