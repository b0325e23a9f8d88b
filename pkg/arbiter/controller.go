// Package arbiter is gpuslice's GPU arbiter: it watches GPU memory, the
// activity and health of protected workloads (Plex) and the clock, and
// preempts preemptible workloads (vLLM) one at a time while a node's GPU
// is under pressure, then restores them in reverse order once it has been
// clear for the hold-down time.
//
// Plan is pure and decides at most one step per node from a View (the
// cluster) and Signals; the Controller samples, plans and applies the
// steps through pkg/ops. Every write carries the intent a restarted
// arbiter needs (the replicas to restore), so it can be killed at any
// point and converges when it comes back.
package arbiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Identity is the released-by name of the arbiter's releases.
const Identity = "gpuslice-arbiter"

// Sources are the signals the arbiter samples; each is optional.
type Sources struct {
	Memory []signals.MemorySource
	// Activity is by the protected workload whose activity it reports.
	Activity map[workload.Ref]signals.ActivitySource
}

// LeaderElection configures the lease that makes two replicas safe.
type LeaderElection struct {
	Enabled bool
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity is this replica's name in the lease; a replica restarted
	// under the same name takes its lease back at once.
	Identity                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Options configure the Controller.
type Options struct {
	Client  kubernetes.Interface
	Config  Config
	Sources Sources
	Ledger  ledger.Options
	// Zone is the time zone of active hours without their own.
	Zone *time.Location
	// Interval is how often signals are sampled; changes in the cluster
	// start a round at once as well.
	Interval       time.Duration
	DryRun         bool
	LeaderElection LeaderElection
	Log            *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Journal is the ConfigMap of the arbiter's journal (pkg/journal);
	// default journal.DefaultName in namespace "default".
	Journal JournalRef
	// Checkpoint, when set, is called between the steps of every write
	// ("before-preempt", "after-preempt", ...): fault-injection tests kill
	// the process there.
	Checkpoint func(name string)
}

// Controller runs the arbiter.
type Controller struct {
	opts      Options
	informers *snapshot.Informers
	metrics   *metrics
	recorder  record.EventRecorder
	memo      *Memo
	poke      chan struct{}
	leading   sync.Mutex
	isLeader  bool
	draining  bool
	// reported remembers what was last logged per node and per invalid
	// workload, so logs and events say each change once.
	reported map[string]string
	rounds   atomic.Int64
	// samples numbers the signal samples (Signals.Sample).
	samples uint64
	// trust is what may protect a workload or raise its priority.
	trust *policy.Trust
	// journal is the arbiter's own record, read when it starts leading.
	journal *journalStore
	// holdSeen is when this process first saw each hold (wall time).
	holdSeen map[workload.Ref]time.Time
}

// DefaultPreemptTimeout bounds the wait for a preemption to take effect
// when Config.PreemptTimeout is 0.
const DefaultPreemptTimeout = 3 * time.Minute

// Rounds is how many rounds have finished, for tests that must see the
// arbiter look at a state (and leave it alone) before changing it.
func (c *Controller) Rounds() int64 { return c.rounds.Load() }

// Leading says whether this replica acts.
func (c *Controller) Leading() bool {
	c.leading.Lock()
	defer c.leading.Unlock()
	return c.isLeader
}

// New builds a Controller; Run starts it.
func New(opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Config.Identity == "" {
		opts.Config.Identity = Identity
	}
	if opts.Config.PreemptTimeout == 0 {
		opts.Config.PreemptTimeout = DefaultPreemptTimeout
	}
	if opts.Journal.Name == "" {
		opts.Journal.Name = journal.DefaultName
	}
	if opts.Journal.Namespace == "" {
		opts.Journal.Namespace = "default"
	}
	protected := slices.Clone(opts.Config.Protected)
	for ref := range opts.Sources.Activity {
		protected = append(protected, ref)
	}
	c := &Controller{opts: opts, metrics: newMetrics(), memo: NewMemo(), poke: make(chan struct{}, 1), reported: map[string]string{},
		trust:   policy.NewTrust(protected, opts.Config.TrustedNamespaces),
		journal: &journalStore{cs: opts.Client, ref: opts.Journal}}
	c.informers = snapshot.NewInformers(opts.Client, c.wake)
	return c
}

// Registry is the controller's metrics registry.
func (c *Controller) Registry() *prometheus.Registry { return c.metrics.registry }

// Readiness is what /readyz answers: ready once the cluster is listed,
// whether leading or on standby.
func (c *Controller) Readiness() (bool, string) {
	c.leading.Lock()
	defer c.leading.Unlock()
	switch {
	case c.draining:
		return false, "shutting down"
	}
	if ok, why := c.informers.Synced(); !ok {
		return false, why
	}
	return true, "ok"
}

func (c *Controller) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Run lists the cluster, then (as leader, when leader election is on)
// runs rounds until ctx ends. Losing the lease is an error: the process
// should exit and start over as a standby.
func (c *Controller) Run(ctx context.Context) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.opts.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gpuslice-arbiter"})

	if err := c.informers.Start(ctx); err != nil {
		return err
	}
	defer func() {
		c.leading.Lock()
		c.draining = true
		c.leading.Unlock()
	}()
	le := c.opts.LeaderElection
	if !le.Enabled {
		c.setLeader(true)
		return c.loop(ctx)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, le.Namespace, le.Name, c.opts.Client.CoreV1(), c.opts.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: le.Identity, EventRecorder: c.recorder})
	if err != nil {
		return fmt.Errorf("leader election lease %s/%s: %w", le.Namespace, le.Name, err)
	}
	var loopErr error
	lost := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: le.Name,
		LeaseDuration: le.LeaseDuration, RenewDeadline: le.RenewDeadline, RetryPeriod: le.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				c.opts.Log.Info("leading: acting on the cluster", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
				c.setLeader(true)
				loopErr = c.loop(lctx)
			},
			OnStoppedLeading: func() {
				c.setLeader(false)
				close(lost)
			},
			OnNewLeader: func(id string) {
				if id != le.Identity {
					c.opts.Log.Info("standing by", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elector.Run(ctx)
	if ctx.Err() != nil {
		return loopErr
	}
	select {
	case <-lost:
		return errors.Join(loopErr, fmt.Errorf("lost the leader lease %s/%s: exiting so a fresh start stands by", le.Namespace, le.Name))
	default:
		return loopErr
	}
}

func (c *Controller) setLeader(on bool) {
	c.leading.Lock()
	c.isLeader = on
	c.leading.Unlock()
	if on {
		c.metrics.leader.Set(1)
	} else {
		c.metrics.leader.Set(0)
	}
}

// loop runs a round every Interval and whenever the cluster changes.
func (c *Controller) loop(ctx context.Context) error {
	// Read the journal afresh on each start of leading: another replica
	// may have written it meanwhile.
	c.journal.current = nil
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		if err := c.Round(ctx); err != nil && ctx.Err() == nil {
			c.opts.Log.Error("round failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.poke:
		}
	}
}

// Round samples the signals, reads the cluster, plans and applies the
// steps. Exported for tests that drive rounds one by one.
func (c *Controller) Round(ctx context.Context) error {
	start := time.Now()
	defer func() {
		c.metrics.rounds.Inc()
		c.metrics.roundDuration.Observe(time.Since(start).Seconds())
		c.rounds.Add(1)
	}()
	sig := c.sample(ctx)
	cluster, err := c.informers.Cluster()
	if err != nil {
		return fmt.Errorf("reading the cluster from the informers: %w", err)
	}
	view, err := clusterview.Read(cluster, clusterview.Options{Ledger: c.opts.Ledger, Zone: c.opts.Zone, Trust: c.trust})
	if err != nil {
		return err
	}
	if err := c.syncJournal(ctx, view); err != nil {
		return err
	}
	sig.Held = map[workload.Ref]journal.Hold{}
	for _, h := range c.journal.current.Held {
		sig.Held[h.Workload] = h
	}
	c.reportInvalid(view, cluster)
	c.reportUntrusted(ctx, view, sig, cluster)
	c.reportUrgent(sig, cluster)
	var errs []error
	for _, w := range view.Workloads {
		if _, held := sig.Held[w.Ref]; held && w.LowerUnfinished() && !c.opts.DryRun {
			if err := ops.FinishLower(ctx, c.opts.Client, w.Ref, w.Lowered, ops.LowerOptions{Checkpoint: c.opts.Checkpoint}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	steps, status, memo := Plan(view, sig, c.opts.Config, c.memo)
	c.memo = memo
	c.observe(view, sig, status)
	c.reportOverdue(ctx, view, sig, status, cluster)
	for _, st := range steps {
		if err := c.apply(ctx, st, cluster); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sample reads every source. A source that fails leaves its nodes
// unknown: no memory trigger, and no restore, until it answers again.
func (c *Controller) sample(ctx context.Context) Signals {
	sig := Signals{Memory: map[string][]signals.GPUMemory{}, Activity: map[workload.Ref]signals.Activity{}, MemoryWatched: len(c.opts.Sources.Memory) > 0}
	sctx, cancel := context.WithTimeout(ctx, max(c.opts.Interval, 2*time.Second))
	defer cancel()
	for _, src := range c.opts.Sources.Memory {
		gpus, err := src.GPUMemory(sctx)
		if err != nil {
			c.signalFailed(src.Name(), err)
		}
		for _, g := range gpus {
			sig.Memory[g.Node] = append(sig.Memory[g.Node], g)
		}
	}
	c.samples++
	sig.Sample = c.samples
	for ref, src := range c.opts.Sources.Activity {
		a, err := src.Activity(sctx)
		if err != nil {
			c.signalFailed(src.Name(), err)
			continue
		}
		sig.Activity[ref] = a
	}
	sig.Now = c.opts.Now()
	return sig
}

func (c *Controller) signalFailed(source string, err error) {
	c.metrics.signalErrors.WithLabelValues(source).Inc()
	c.opts.Log.Warn("signal source failed; its nodes count as unknown", "source", source, "error", err)
}

// observe logs each node's status when it changes and updates gauges.
func (c *Controller) observe(v *clusterview.View, sig Signals, status []NodeStatus) {
	preempted := map[string]int{}
	for _, w := range v.Workloads {
		switch {
		case !ours(w, sig, c.opts.Config):
		case w.Record != nil:
			preempted[w.Record.Node]++
		case w.Lowered != nil:
			preempted[w.Lowered.Node]++
		}
	}
	for _, st := range status {
		c.metrics.pressure.WithLabelValues(st.Node).Set(boolGauge(st.Pressure))
		c.metrics.released.WithLabelValues(st.Node).Set(float64(preempted[st.Node]))
		line := fmt.Sprint(st.Pressure, st.Triggers, st.Waiting)
		if c.reported["node/"+st.Node] == line {
			continue
		}
		c.reported["node/"+st.Node] = line
		level := slog.LevelInfo
		if st.Urgent {
			level = slog.LevelWarn
		}
		c.opts.Log.Log(context.Background(), level, "node status", "urgent", st.Urgent, "node", st.Node, "pressure", st.Pressure, "triggers", st.Triggers, "waiting", st.Waiting, "minFreeBytes", st.MinFree)
	}
}

// reportUrgent warns, in the log and as an Event on the protected
// workload, when it is failing for want of the GPU (a transcode fell back
// to the CPU), once per distinct state.
func (c *Controller) reportUrgent(sig Signals, cluster *clusterview.Cluster) {
	for ref, a := range sig.Activity {
		key := "urgent/" + ref.Qualified()
		if !a.Urgent() {
			delete(c.reported, key)
			continue
		}
		if c.reported[key] == a.Detail {
			continue
		}
		c.reported[key] = a.Detail
		c.opts.Log.Warn("protected workload is failing for want of the GPU: preempting at once", "workload", ref.Qualified(), "activity", a.Detail)
		c.event(cluster.Object(ref), corev1.EventTypeWarning, ReasonTranscodeFellBack,
			"%s; gpuslice arbiter preempts lower-priority workloads at once, without waiting for memory samples", a.Detail)
	}
}

// reportInvalid logs and events each workload with a broken policy once
// per distinct problem.
func (c *Controller) reportInvalid(v *clusterview.View, cluster *clusterview.Cluster) {
	c.metrics.invalid.Set(float64(len(v.Invalid)))
	for _, bad := range v.Invalid {
		key := "invalid/" + bad.Ref.Qualified()
		if c.reported[key] == bad.Err.Error() {
			continue
		}
		c.reported[key] = bad.Err.Error()
		c.opts.Log.Warn("skipping workload: its arbiter policy is invalid", "workload", bad.Ref.Qualified(), "error", bad.Err)
		c.event(cluster.Object(bad.Ref), corev1.EventTypeWarning, ReasonInvalidPolicy, "gpuslice arbiter skips this workload: %v", bad.Err)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
