// Command arbiter benchmarks the arbiter's reaction time: from a change of
// its signal (the stand-in Plex starts or ends a hardware transcode) to the
// preemptible Deployment's new spec.replicas stored in the API server, as
// a client-go watch on the Deployment delivers it.
//
// Everything runs on the local control plane of the end-to-end tests
// (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, the
// device-injection webhook), with the simulated kubelet, the seed's
// arbitrated workloads and stand-in Plex servers (plextest). Side by side:
//
//   - arbiter: the real arbiter (pkg/arbiter.New and Run, in this process,
//     real clock), Plex as the activity source of media/plex, sampling
//     every -interval (the signal's scrape interval), hold-down 0. It acts
//     on ai-dev/vllm-server on node homelabai.
//   - hpa: a loop shaped like the Horizontal Pod Autoscaler's: every
//     -period it reads the scale subresource and the signal (the same
//     signals.Plex over plexhealth.Client), and when the desired replicas
//     (0 during a hardware transcode, 2 otherwise) differ, updates
//     deployments/scale. It runs -lanes independent copies, each with its
//     own Deployment (a copy of vLLM without the arbiter's annotations, in
//     namespace bench-hpa-NN on node bench-hpa-NN), stand-in Plex and
//     loop, so that its cycles, which take about 2 x -period each, fit in
//     a reasonable time.
//
// A cycle waits until the Deployment is steady (2 replicas ready), lets the
// poller look at it once, waits a random fraction of the polling interval
// (so that flips land at uniformly random phases of the poll), starts a
// transcode (t0), and takes the first watch event whose spec.replicas is 0
// (preempt); then, once the pods are gone, the same with the transcode
// ended and spec.replicas back to 2 (restore).
//
//	go run ./bench/arbiter [-quick] [-cycles 100] [-baseline-cycles 100] [-o json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// aimSlack is the aim beyond the scrape interval: p99 < 1 s +
// the signal's own scrape interval.
const aimSlack = time.Second

const (
	plexToken = "plex-token"
	replicas  = 2 // vLLM's replicas in the arbitrated workloads
)

var (
	vllm = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	plex = workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
)

type options struct {
	Interval       time.Duration `json:"-"`
	Period         time.Duration `json:"-"`
	IntervalS      float64       `json:"intervalSeconds"`
	PeriodS        float64       `json:"baselinePeriodSeconds"`
	Cycles         int           `json:"cycles"`
	BaselineCycles int           `json:"baselineCycles"`
	Lanes          int           `json:"baselineLanes"`
	Concurrent     bool          `json:"concurrent"`
	Seed           uint64        `json:"seed"`
	verbose        bool
}

func main() {
	var o options
	flag.DurationVar(&o.Interval, "interval", time.Second, "the arbiter's signal scrape interval (arbiter.Options.Interval)")
	flag.DurationVar(&o.Period, "period", 15*time.Second, "the HPA-style loop's polling period (the HPA's --horizontal-pod-autoscaler-sync-period)")
	flag.IntVar(&o.Cycles, "cycles", 100, "arbiter cycles (each a preempt and a restore)")
	flag.IntVar(&o.BaselineCycles, "baseline-cycles", 100, "HPA-style cycles, spread over -lanes")
	flag.IntVar(&o.Lanes, "lanes", 10, "independent HPA-style lanes (Deployment, node, stand-in Plex and loop each) run at once")
	flag.BoolVar(&o.Concurrent, "concurrent", false, "run the arbiter's cycles while the baseline runs (faster; the baseline's cluster changes then wake the arbiter between its ticks)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the random phases")
	quick := flag.Bool("quick", false, "a short check: 20 cycles each")
	out := flag.String("o", "table", "output: table or json")
	flag.BoolVar(&o.verbose, "v", false, "the arbiter's log on stderr")
	flag.Parse()
	if *quick {
		o.Cycles, o.BaselineCycles = 20, 20
	}
	if *out != "table" && *out != "json" {
		log.Fatalf("-o %s: want table or json", *out)
	}
	if o.Cycles < 1 || o.BaselineCycles < 1 || o.Lanes < 1 || o.Interval <= 0 || o.Period <= 0 {
		log.Fatal("-cycles, -baseline-cycles and -lanes must be at least 1, -interval and -period positive")
	}
	o.Lanes = min(o.Lanes, o.BaselineCycles)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, o)
	stop()
	if err != nil {
		log.Fatal(err)
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			log.Fatal(err)
		}
		return
	}
	rep.print(os.Stdout)
}

type report struct {
	Machine map[string]string `json:"machine"`
	Options options           `json:"options"`
	// Aim is 1 s + the arbiter's interval, for p99 of every row.
	Aim     time.Duration `json:"-"`
	AimS    float64       `json:"aimSeconds"`
	Results []result      `json:"results"`
	// Seconds of wall time per method's cycles, and in all.
	ArbiterWall  float64 `json:"arbiterWallSeconds"`
	BaselineWall float64 `json:"baselineWallSeconds"`
	Wall         float64 `json:"wallSeconds"`
}

type result struct {
	Method   string    `json:"method"`
	Reaction string    `json:"reaction"`
	Cycles   int       `json:"cycles"`
	P50      float64   `json:"p50Seconds"`
	P90      float64   `json:"p90Seconds"`
	P99      float64   `json:"p99Seconds"`
	Max      float64   `json:"maxSeconds"`
	Min      float64   `json:"minSeconds"`
	Mean     float64   `json:"meanSeconds"`
	AimMet   bool      `json:"aimMet"`
	Samples  []float64 `json:"samplesSeconds"`
	samplesD []time.Duration
}

func run(ctx context.Context, o options) (*report, error) {
	began := time.Now()
	o.IntervalS, o.PeriodS = o.Interval.Seconds(), o.Period.Seconds()
	rep := &report{Machine: benchstat.Machine(), Options: o, Aim: o.Interval + aimSlack, AimS: (o.Interval + aimSlack).Seconds()}
	progress := os.Stderr
	binDir, err := localcluster.EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	env, err := demo.StartEnv(ctx, localcluster.Options{BinDir: binDir}, quiet)
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	cs := env.Cluster.Client
	kctx, kcancel := context.WithCancel(context.Background())
	defer kcancel()
	env.Cluster.StartKubelet(kctx)
	if err := demo.EnsurePriorityClasses(ctx, cs); err != nil {
		return nil, err
	}

	// The seed's arbitrated workloads, with vLLM the only preemptible one:
	// with Ollama preemptible too, a transcode preempts Ollama first (lower
	// priority) and vLLM only once Ollama's pod is gone, which measures pod
	// termination rather than the arbiter.
	ws := seed.ArbitratedWorkloads()
	for _, w := range ws {
		if d := w.Deployment; d.Namespace == "ai" && d.Name == "ollama" {
			delete(d.Annotations, workload.AnnotationPreemptible)
			delete(d.Annotations, workload.AnnotationPriority)
		}
	}
	// The baseline's lanes: a copy of vLLM each, without the arbiter's
	// annotations, on a node of its own.
	var hpaWorkloads []seed.Workload
	for i := range o.Lanes {
		name := fmt.Sprintf("bench-hpa-%02d", i+1)
		n := seed.HomelabAI()
		n.Name = name
		if _, err := env.Cluster.AddNode(ctx, n); err != nil {
			return nil, err
		}
		w := baselineWorkload(ws, name)
		hpaWorkloads = append(hpaWorkloads, w)
	}
	fmt.Fprintf(progress, "deploying the arbitrated workloads and %d baseline lane(s)\n", o.Lanes)
	if err := demo.Deploy(ctx, env.Cluster, append(ws, hpaWorkloads...)...); err != nil {
		return nil, err
	}

	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))

	// The arbiter's lane.
	arbPlex := plextest.Start(plexToken)
	defer arbPlex.Close()
	arbTrack, err := track(kctx, cs, vllm.Namespace, vllm.Name)
	if err != nil {
		return nil, err
	}
	arbLog := quiet
	if o.verbose {
		arbLog = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctrl := arbiter.New(arbiter.Options{
		Client: cs,
		// No memory source: the activity is the only signal, so memory
		// neither triggers nor holds back a restore.
		Config:   arbiter.Config{MinFree: 1 << 30, Margin: 512 << 20, HoldDown: 0, UnhealthyGrace: time.Minute},
		Interval: o.Interval,
		Zone:     time.UTC,
		Log:      arbLog,
		Sources: arbiter.Sources{Activity: map[workload.Ref]signals.ActivitySource{
			plex: &signals.Plex{Client: &plexhealth.Client{URL: arbPlex.URL, Token: plexToken}},
		}},
	})
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	arbDone := make(chan error, 1)
	go func() { arbDone <- ctrl.Run(actx) }()
	stopArbiter := func() error {
		if acancel == nil {
			return nil
		}
		acancel()
		acancel = nil
		return <-arbDone
	}
	defer stopArbiter()
	arbLane := &lane{
		name: "arbiter", plex: arbPlex, dep: arbTrack, cs: cs, ref: vllm, phase: o.Interval, cycles: o.Cycles,
		rng:     rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())),
		timeout: 2*o.Interval + 30*time.Second, wantBy: arbiter.Identity,
		// Quiet: a round that began after the state settled has seen it,
		// so the next one comes from the ticker, not from a cluster change.
		settle: func(ctx context.Context) error {
			if err := benchstat.Sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
			target := ctrl.Rounds() + 2
			return until(ctx, 30*time.Second, func() bool { return ctrl.Rounds() >= target })
		},
	}

	// The baseline's lanes.
	var hpaLanes []*lane
	perLane := o.BaselineCycles / o.Lanes
	for i, w := range hpaWorkloads {
		d := w.Deployment
		p := plextest.Start(plexToken)
		defer p.Close()
		t, err := track(kctx, cs, d.Namespace, d.Name)
		if err != nil {
			return nil, err
		}
		n := perLane
		if i < o.BaselineCycles%o.Lanes {
			n++
		}
		l := &lane{
			name: d.Namespace, plex: p, dep: t, cs: cs, ref: workload.Ref{Kind: workload.KindDeployment, Namespace: d.Namespace, Name: d.Name},
			phase: o.Period, cycles: n, rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())),
			timeout: 2*o.Period + 30*time.Second,
			settle:  func(ctx context.Context) error { return benchstat.Sleep(ctx, 100*time.Millisecond) },
		}
		hpaLanes = append(hpaLanes, l)
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	var loops sync.WaitGroup
	defer loops.Wait()
	defer hcancel()
	startBaseline := func() {
		for _, l := range hpaLanes {
			h := &hpaLoop{cs: cs, ns: l.ref.Namespace, name: l.ref.Name, period: o.Period, max: replicas,
				signal: &signals.Plex{Client: &plexhealth.Client{URL: l.plex.URL, Token: plexToken}},
				offset: time.Duration(l.rng.Float64() * float64(o.Period))}
			loops.Go(func() { h.run(hctx) })
		}
	}

	var arbErr, hpaErr error
	var arbWall, hpaWall time.Duration
	runArbiter := func() {
		start := time.Now()
		arbErr = runLanes(ctx, []*lane{arbLane}, progress)
		arbWall = time.Since(start)
		if err := stopArbiter(); err != nil && arbErr == nil {
			arbErr = fmt.Errorf("arbiter: %w", err)
		}
	}
	runBaseline := func() {
		start := time.Now()
		startBaseline()
		hpaErr = runLanes(ctx, hpaLanes, progress)
		hpaWall = time.Since(start)
		hcancel()
	}
	if o.Concurrent {
		var wg sync.WaitGroup
		wg.Go(runArbiter)
		wg.Go(runBaseline)
		wg.Wait()
	} else {
		runArbiter()
		if arbErr == nil {
			runBaseline()
		}
	}
	if err := errors.Join(arbErr, hpaErr); err != nil {
		return nil, err
	}
	rep.ArbiterWall, rep.BaselineWall = arbWall.Seconds(), hpaWall.Seconds()

	var hpaPre, hpaRes []time.Duration
	for _, l := range hpaLanes {
		hpaPre = append(hpaPre, l.preempt...)
		hpaRes = append(hpaRes, l.restore...)
	}
	arbName := "arbiter (interval " + o.Interval.String() + ")"
	hpaName := "HPA-style loop (period " + o.Period.String() + ")"
	rep.Results = []result{
		summarize(arbName, "preempt", arbLane.preempt, rep.Aim),
		summarize(arbName, "restore", arbLane.restore, rep.Aim),
		summarize(hpaName, "preempt", hpaPre, rep.Aim),
		summarize(hpaName, "restore", hpaRes, rep.Aim),
	}
	rep.Wall = time.Since(began).Seconds()
	return rep, nil
}

// baselineWorkload is vLLM as in the arbitrated workloads, in its own
// namespace on its own node, without the arbiter's annotations.
func baselineWorkload(ws []seed.Workload, name string) seed.Workload {
	for _, w := range ws {
		if d := w.Deployment; d.Namespace == vllm.Namespace && d.Name == vllm.Name {
			d = d.DeepCopy()
			d.Namespace = name
			d.Annotations = nil
			d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": name}
			cm := w.ConfigMap.DeepCopy()
			cm.Namespace = name
			return seed.Workload{Deployment: d, ConfigMap: cm}
		}
	}
	panic("no vLLM in the arbitrated workloads")
}

// runLanes runs every lane's cycles at once and reports progress.
func runLanes(ctx context.Context, lanes []*lane, progress io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	total := 0
	for _, l := range lanes {
		total += l.cycles
	}
	var mu sync.Mutex
	done := 0
	step := max(total/10, 1)
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Go(func() {
			for range l.cycles {
				if err := l.cycle(ctx); err != nil {
					cancel(fmt.Errorf("%s, cycle %d: %w", l.name, len(l.preempt)+1, err))
					return
				}
				mu.Lock()
				done++
				if done%step == 0 || done == total {
					method := "hpa"
					if l.wantBy != "" {
						method = "arbiter"
					}
					fmt.Fprintf(progress, "%s: %d/%d cycles\n", method, done, total)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// lane is one Deployment, its stand-in Plex and the poller acting on it.
type lane struct {
	name string
	plex *plextest.Server
	dep  *tracker
	cs   kubernetes.Interface
	ref  workload.Ref
	// phase is the poller's interval: each flip waits a random fraction.
	phase   time.Duration
	cycles  int
	rng     *rand.Rand
	timeout time.Duration
	// wantBy, when set, is the released-by the preemption must carry.
	wantBy string
	// settle waits until the poller has seen the state as it is.
	settle func(context.Context) error

	preempt, restore []time.Duration
}

func (l *lane) transcode(on bool) time.Time {
	l.plex.SetTranscoding(on)
	return time.Now()
}

func (l *lane) cycle(ctx context.Context) error {
	steady := func(d *obs) bool {
		return d.spec == replicas && d.status == replicas && d.ready == replicas && d.updated == replicas && d.terminating == 0 && d.observed >= d.generation
	}
	if err := l.dep.waitState(ctx, l.timeout, "steady at 2 ready replicas", steady); err != nil {
		return err
	}
	if err := l.flip(ctx, true); err != nil {
		return err
	}
	gone := func(d *obs) bool {
		return d.spec == 0 && d.status == 0 && d.terminating == 0 && d.observed >= d.generation
	}
	if err := l.dep.waitState(ctx, l.timeout, "scaled to 0", gone); err != nil {
		return err
	}
	if err := l.podsGone(ctx); err != nil {
		return err
	}
	if err := l.flip(ctx, false); err != nil {
		return err
	}
	return l.dep.waitState(ctx, l.timeout, "back at 2 ready replicas", steady)
}

// flip settles, waits a random fraction of the poller's interval, flips the
// transcode and times the first watch event with the new spec.replicas.
func (l *lane) flip(ctx context.Context, on bool) error {
	if err := l.settle(ctx); err != nil {
		return err
	}
	if err := benchstat.Sleep(ctx, time.Duration(l.rng.Float64()*float64(l.phase))); err != nil {
		return err
	}
	want, what := int32(replicas), "restore"
	if on {
		want, what = 0, "preempt"
	}
	mark := l.dep.len()
	t0 := l.transcode(on)
	o, err := l.dep.waitEvent(ctx, mark, l.timeout, func(d *obs) bool { return d.spec == want })
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if on && l.wantBy != "" && o.releasedBy != l.wantBy {
		return fmt.Errorf("preempt: scaled to 0 with released-by %q, want %q", o.releasedBy, l.wantBy)
	}
	if on {
		l.preempt = append(l.preempt, o.at.Sub(t0))
	} else {
		l.restore = append(l.restore, o.at.Sub(t0))
	}
	return nil
}

// podsGone waits until the Deployment has no pod left, terminating or not.
func (l *lane) podsGone(ctx context.Context) error {
	sel := labels.SelectorFromSet(labels.Set{"app": "vllm"}).String()
	return untilErr(ctx, l.timeout, func() (bool, error) {
		list, err := l.cs.CoreV1().Pods(l.ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		return err == nil && len(list.Items) == 0, err
	})
}

// hpaLoop is the baseline: the Horizontal Pod Autoscaler's reconcile
// (read the scale subresource and the metric, compute the replicas, update
// the scale if they differ) every period, with the signal read straight
// from Plex. The real HPA adds a metrics pipeline (an adapter over
// Prometheus, its own scrape interval), a 5-minute downscale
// stabilization window, and cannot scale to 0 without the alpha
// HPAScaleToZero gate; none of that is here, so this is the HPA's best
// case.
type hpaLoop struct {
	cs       kubernetes.Interface
	ns, name string
	period   time.Duration
	max      int32
	signal   signals.ActivitySource
	// offset delays the first tick, so the lanes do not poll in step.
	offset time.Duration
}

func (h *hpaLoop) run(ctx context.Context) {
	if benchstat.Sleep(ctx, h.offset) != nil {
		return
	}
	t := time.NewTicker(h.period)
	defer t.Stop()
	for {
		if err := h.reconcile(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "hpa %s/%s: %v\n", h.ns, h.name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *hpaLoop) reconcile(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(h.period, 2*time.Second))
	defer cancel()
	scale, err := h.cs.AppsV1().Deployments(h.ns).GetScale(ctx, h.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the scale: %w", err)
	}
	a, err := h.signal.Activity(ctx)
	if err != nil {
		// As the HPA does when its metric fails: leave the scale alone.
		return err
	}
	desired := h.max
	if a.Active {
		desired = 0
	}
	if scale.Spec.Replicas == desired {
		return nil
	}
	scale.Spec.Replicas = desired
	if _, err := h.cs.AppsV1().Deployments(h.ns).UpdateScale(ctx, h.name, scale, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the scale: %w", err)
	}
	return nil
}

// obs is the Deployment as one watch event delivered it, and when.
type obs struct {
	at                                        time.Time
	spec, status, ready, updated, terminating int32
	generation, observed                      int64
	releasedBy                                string
}

func observe(d *appsv1.Deployment, at time.Time) obs {
	o := obs{at: at, status: d.Status.Replicas, ready: d.Status.ReadyReplicas, updated: d.Status.UpdatedReplicas,
		generation: d.Generation, observed: d.Status.ObservedGeneration, releasedBy: d.Annotations[workload.AnnotationReleasedBy], spec: 1}
	if d.Spec.Replicas != nil {
		o.spec = *d.Spec.Replicas
	}
	if d.Status.TerminatingReplicas != nil {
		o.terminating = *d.Status.TerminatingReplicas
	}
	return o
}

// tracker keeps every state a watch on one Deployment delivered, stamped
// with the time it arrived.
type tracker struct {
	mu      sync.Mutex
	events  []obs
	changed chan struct{}
	err     error
}

func track(ctx context.Context, cs kubernetes.Interface, ns, name string) (*tracker, error) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	t := &tracker{events: []obs{observe(d, time.Now())}, changed: make(chan struct{})}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, d.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = "metadata.name=" + name
			return cs.AppsV1().Deployments(ns).Watch(ctx, opts)
		},
	})
	if err != nil {
		return nil, err
	}
	go func() {
		defer rw.Stop()
		for ev := range rw.ResultChan() {
			at := time.Now()
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			t.mu.Lock()
			t.events = append(t.events, observe(d, at))
			close(t.changed)
			t.changed = make(chan struct{})
			t.mu.Unlock()
		}
		t.mu.Lock()
		t.err = errors.New("the watch on " + ns + "/" + name + " ended")
		close(t.changed)
		t.mu.Unlock()
	}()
	return t, nil
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.events)
}

// waitEvent returns the first event from index from on that matches.
func (t *tracker) waitEvent(ctx context.Context, from int, timeout time.Duration, match func(*obs) bool) (obs, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		t.mu.Lock()
		for ; from < len(t.events); from++ {
			if match(&t.events[from]) {
				o := t.events[from]
				t.mu.Unlock()
				return o, nil
			}
		}
		changed, err := t.changed, t.err
		t.mu.Unlock()
		if err != nil {
			return obs{}, err
		}
		select {
		case <-ctx.Done():
			return obs{}, fmt.Errorf("no watch event within %s: %w", timeout, ctx.Err())
		case <-changed:
		}
	}
}

// waitState waits until the latest state matches.
func (t *tracker) waitState(ctx context.Context, timeout time.Duration, what string, match func(*obs) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		t.mu.Lock()
		last := t.events[len(t.events)-1]
		changed, err := t.changed, t.err
		t.mu.Unlock()
		if match(&last) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the Deployment to be %s (last seen: %+v): %w", what, last, ctx.Err())
		case <-changed:
		}
	}
}

func until(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return untilErr(ctx, timeout, func() (bool, error) { return cond(), nil })
}

func untilErr(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if err := benchstat.Sleep(ctx, 10*time.Millisecond); err != nil {
			return errors.Join(err, ctx.Err())
		}
	}
}

// summarize gives nearest-rank percentiles.
func summarize(method, reaction string, ds []time.Duration, aim time.Duration) result {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := result{Method: method, Reaction: reaction, Cycles: len(s), samplesD: s}
	if len(s) == 0 {
		return r
	}
	q := func(p float64) time.Duration { return benchstat.Percentile(s, p) }
	var sum time.Duration
	for _, d := range ds {
		sum += d
		r.Samples = append(r.Samples, round(d))
	}
	r.P50, r.P90, r.P99, r.Max, r.Min = round(q(0.50)), round(q(0.90)), round(q(0.99)), round(s[len(s)-1]), round(s[0])
	r.Mean = round(sum / time.Duration(len(s)))
	r.AimMet = q(0.99) < aim
	return r
}

func round(d time.Duration) float64 { return math.Round(d.Seconds()*1e4) / 1e4 }

func (r *report) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %s, %s CPUs, GOMAXPROCS=%s, %s %s\n", m["cpu"], m["cpus"], m["gomaxprocs"], m["go"], m["goos/goarch"])
	mode := "one after the other"
	if r.Options.Concurrent {
		mode = "at once"
	}
	fmt.Fprintf(w, "arbiter: interval %s, hold-down 0, %d cycles in %.0f s; HPA-style loop: period %s, %d cycles over %d lanes in %.0f s; run %s, seed %d, %.0f s in all\n\n",
		r.Options.Interval, r.Options.Cycles, r.ArbiterWall, r.Options.Period, r.Options.BaselineCycles, r.Options.Lanes, r.BaselineWall, mode, r.Options.Seed, r.Wall)
	fmt.Fprintf(w, "| method | reaction | cycles | p50 | p90 | p99 | max | p99 < %s |\n", seconds(r.Aim.Seconds()))
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---|")
	for _, x := range r.Results {
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", x.Method, x.Reaction, x.Cycles,
			seconds(x.P50), seconds(x.P90), seconds(x.P99), seconds(x.Max), yesNo(x.AimMet))
	}
	fmt.Fprintf(w, "\nreaction: from the stand-in Plex's flip to the first watch event with the new spec.replicas; aim: p99 < 1 s + the %s scrape interval\n", r.Options.Interval)
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) + " s" }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
