package e2e

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/dcgmtest"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

var (
	vllm   = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	ollama = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "ollama"}
	plex   = workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
)

// arbiterEnv is the reference cluster with the arbiter's policy, a
// simulated kubelet, and stand-ins for Plex and dcgm-exporter.
type arbiterEnv struct {
	env     *demo.Env
	cs      kubernetes.Interface
	kubelet *localcluster.Kubelet
	plex    *plextest.Server
	dcgm    *dcgmtest.Server
	clock   *clock
}

func startArbiterEnv(t *testing.T) *arbiterEnv {
	t.Helper()
	env := startEnv(t)
	ctx := testContext(t)
	kctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := &arbiterEnv{env: env, cs: env.Cluster.Client, kubelet: env.Cluster.StartKubelet(kctx), clock: &clock{now: time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)}}
	if err := demo.EnsurePriorityClasses(ctx, a.cs); err != nil {
		t.Fatal(err)
	}
	if err := demo.Deploy(ctx, env.Cluster, seed.ArbitratedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	a.plex = plextest.Start("plex-token")
	t.Cleanup(a.plex.Close)
	a.dcgm = dcgmtest.Start(dcgmtest.RTX3080Ti("homelabai"))
	t.Cleanup(a.dcgm.Close)
	return a
}

// run starts an arbiter in this process; it stops when the test ends.
func (a *arbiterEnv) run(t *testing.T, change func(*arbiter.Options)) *arbiter.Controller {
	c, _ := a.runStoppable(t, change)
	return c
}

// runStoppable is run with a function that stops the arbiter early.
func (a *arbiterEnv) runStoppable(t *testing.T, change func(*arbiter.Options)) (*arbiter.Controller, func()) {
	t.Helper()
	o := arbiter.Options{
		Client:   a.cs,
		Config:   arbiter.Config{MinFree: 1 << 30, Margin: 512 << 20, HoldDown: 5 * time.Minute},
		Interval: 50 * time.Millisecond,
		Log:      testLog(),
		Now:      a.clock.Now,
		Zone:     time.UTC,
		Sources: arbiter.Sources{Activity: map[workload.Ref]signals.ActivitySource{
			plex: &signals.Plex{Client: &plexhealth.Client{URL: a.plex.URL, Token: "plex-token"}},
		}},
	}
	if change != nil {
		change(&o)
	}
	c := arbiter.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("arbiter: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func (a *arbiterEnv) transcode(on bool) { a.plex.SetTranscoding(on) }

// settle waits until the arbiter has run n more rounds on the state as it
// is now.
func settle(t *testing.T, ctx context.Context, c *arbiter.Controller, n int64) {
	t.Helper()
	target := c.Rounds() + n
	poll(t, ctx, "arbiter rounds", func(context.Context) (bool, error) { return c.Rounds() >= target, nil })
}

func poll(t *testing.T, ctx context.Context, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitReplicas waits for spec.replicas and, with pods >= 0, that many
// pods of the workload (the kubelet plays along).
func (a *arbiterEnv) waitReplicas(t *testing.T, ctx context.Context, ref workload.Ref, want int32) {
	t.Helper()
	a.waitReplicasEach(t, ctx, ref, want, func() {})
}

// waitReplicasEach is waitReplicas calling each before every look.
func (a *arbiterEnv) waitReplicasEach(t *testing.T, ctx context.Context, ref workload.Ref, want int32, each func()) {
	t.Helper()
	poll(t, ctx, ref.Qualified()+" at "+strconv.Itoa(int(want))+" replicas", func(ctx context.Context) (bool, error) {
		each()
		d, err := a.cs.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return *d.Spec.Replicas == want && d.Status.ReadyReplicas == want && d.Status.Replicas == want, nil
	})
}

// waitAdvancing is waitReplicas while the clock moves on 10 s at each
// look: the arbiter starts a node's hold-down when it first sees the node
// clear, which on a busy machine can come after the test's last Advance,
// and a frozen clock would never end it.
func (a *arbiterEnv) waitAdvancing(t *testing.T, ctx context.Context, ref workload.Ref, want int32) {
	t.Helper()
	a.waitReplicasEach(t, ctx, ref, want, func() { a.clock.Advance(10 * time.Second) })
}

func (a *arbiterEnv) events(t *testing.T, ctx context.Context, ref workload.Ref, reason string) []corev1.Event {
	t.Helper()
	list, err := a.cs.CoreV1().Events(ref.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + ref.Name + ",reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestArbiterPlexTranscode(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	c := a.run(t, nil)
	settle(t, ctx, c, 3)
	if got := replicas(ctx, t, a.cs, vllm); got != 2 {
		t.Fatalf("vLLM has %d replicas before any transcode, want 2", got)
	}

	a.transcode(true)
	a.waitReplicas(t, ctx, vllm, 0)
	d := deployment(ctx, t, a.cs, vllm)
	if d.Annotations[workload.AnnotationReleasedReplicas] != "2" || d.Annotations[workload.AnnotationReleasedBy] != arbiter.Identity || d.Annotations[workload.AnnotationReleasedNode] != "homelabai" {
		t.Errorf("release record = %v", d.Annotations)
	}
	if ev := a.events(t, ctx, vllm, arbiter.ReasonPreempted); len(ev) == 0 {
		t.Error("no Preempted event on vLLM")
	}
	// Ollama is preemptible too, but a transcode only preempts workloads
	// below Plex's priority, one at a time: vLLM (1000, 2 replicas) after
	// Ollama (500) — both go.
	a.waitReplicas(t, ctx, ollama, 0)

	a.transcode(false)
	settle(t, ctx, c, 5)
	if got := replicas(ctx, t, a.cs, vllm); got != 0 {
		t.Fatalf("vLLM came back to %d replicas before the hold-down", got)
	}
	a.clock.Advance(5 * time.Minute)
	a.waitAdvancing(t, ctx, vllm, 2)
	a.waitReplicas(t, ctx, ollama, 1)
	d = deployment(ctx, t, a.cs, vllm)
	if hasReleaseAnnotations(d.Annotations) {
		t.Errorf("release record left after restore: %v", d.Annotations)
	}
	if ev := a.events(t, ctx, vllm, arbiter.ReasonRestored); len(ev) == 0 {
		t.Error("no Restored event on vLLM")
	}
}

// TestArbiterPlexFallback: a transcode that asked for the GPU and fell
// back to the CPU preempts at once, with plenty of GPU memory free; Intel
// Quick Sync and music transcodes are no NVIDIA activity.
func TestArbiterPlexFallback(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	a.freeMiB(t, 8000)
	c := a.run(t, func(o *arbiter.Options) {
		o.Sources.Memory = []signals.MemorySource{&signals.DCGMExporter{Targets: []signals.Target{{URL: a.dcgm.MetricsURL()}}}}
	})
	a.plex.SetSessions(plextest.QuickSync("Up", "kim"), plextest.MusicTranscode("One More Time", "lee"))
	stays(t, ctx, a, c, ollama, 1, "Quick Sync and music use no NVIDIA GPU")

	a.plex.SetSessions(plextest.SoftwareFallback("Alien", "sam"), plextest.QuickSync("Up", "kim"))
	a.waitReplicas(t, ctx, ollama, 0)
	a.waitReplicas(t, ctx, vllm, 0)
	ev := a.events(t, ctx, ollama, arbiter.ReasonPreempted)
	if len(ev) == 0 || !strings.Contains(ev[0].Message, "fell back to the CPU although hardware was requested: Alien") {
		t.Errorf("Preempted events on Ollama %v: want the fallback as the reason", ev)
	}
	poll(t, ctx, "a TranscodeFellBack warning on Plex", func(ctx context.Context) (bool, error) {
		ev := a.events(t, ctx, plex, arbiter.ReasonTranscodeFellBack)
		return len(ev) > 0 && ev[0].Type == corev1.EventTypeWarning && strings.Contains(ev[0].Message, "Alien"), nil
	})
}

func (a *arbiterEnv) annotate(t *testing.T, ctx context.Context, ref workload.Ref, set map[string]string) {
	t.Helper()
	if _, err := ops.Annotate(ctx, a.cs, ref, set, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// lowerMemory sets ref's preempt action to lower-memory=0.30, with the
// Recreate strategy it needs: with a surging rollout the arbiter scales
// to zero instead (clusterview's lowerNeedsRecreate).
func (a *arbiterEnv) lowerMemory(t *testing.T, ctx context.Context, ref workload.Ref) {
	t.Helper()
	patch := []byte(`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}`)
	if _, err := a.cs.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	a.annotate(t, ctx, ref, map[string]string{"gpuslice.io/preempt-action": "lower-memory=0.30"})
}

// freeMiB makes the stand-in dcgm-exporter report that much free memory.
func (a *arbiterEnv) freeMiB(t *testing.T, free int64) {
	t.Helper()
	g := dcgmtest.RTX3080Ti("homelabai")
	if err := a.dcgm.Set("homelabai", 0, g.TotalMiB-g.ReservedMiB-free); err != nil {
		t.Fatal(err)
	}
}

// stays checks that ref keeps its replicas while the arbiter runs rounds.
func stays(t *testing.T, ctx context.Context, a *arbiterEnv, c *arbiter.Controller, ref workload.Ref, want int32, why string) {
	t.Helper()
	settle(t, ctx, c, 5)
	if got := replicas(ctx, t, a.cs, ref); got != want {
		t.Fatalf("%s: %s has %d replicas, want %d", why, ref.Qualified(), got, want)
	}
}

func TestArbiterMemoryPressure(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	tts := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "tts"}
	// An operator's own release of a preemptible workload stays theirs.
	a.annotate(t, ctx, tts, map[string]string{"gpuslice.io/preemptible": "true"})
	if _, err := ops.Release(ctx, a.cs, tts, ops.ReleaseOptions{By: "alice", Reason: "testing a model"}); err != nil {
		t.Fatal(err)
	}
	// The GPU gets memory back when a pod's containers stop.
	frees := map[string]int64{"ollama": 1300, "vllm": 11000}
	a.kubelet.OnStop(func(p *corev1.Pod) {
		if free, ok := frees[p.Labels["app"]]; ok {
			a.freeMiB(t, free)
		}
	})
	c := a.run(t, func(o *arbiter.Options) {
		o.Sources = arbiter.Sources{Memory: []signals.MemorySource{&signals.DCGMExporter{Targets: []signals.Target{{URL: a.dcgm.MetricsURL()}}}}}
	})
	stays(t, ctx, a, c, vllm, 2, "1149Mi free is above the 1Gi threshold")

	// Lowest priority first: Ollama (500) before vLLM (1000).
	a.freeMiB(t, 500)
	a.waitReplicas(t, ctx, ollama, 0)
	// Ollama's memory is back (1300Mi free): pressure over, but inside the
	// hysteresis margin, so vLLM is not preempted and Ollama not restored.
	a.clock.Advance(time.Hour)
	stays(t, ctx, a, c, vllm, 2, "pressure cleared after Ollama")
	stays(t, ctx, a, c, ollama, 0, "inside the hysteresis margin")

	a.freeMiB(t, 500)
	a.waitReplicas(t, ctx, vllm, 0)
	// status.replicas leaves out terminating pods: wait until vLLM's have
	// stopped (and freed their memory) before the kubelet stops freeing,
	// or a late stop overwrites the memory set below.
	poll(t, ctx, "vLLM's pods gone", func(ctx context.Context) (bool, error) {
		pods, err := a.cs.CoreV1().Pods(vllm.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=vllm"})
		return err == nil && len(pods.Items) == 0, err
	})
	a.kubelet.OnStop(nil)

	// Restores go in reverse order, and only when the GPU keeps the margin
	// after the workload's expected memory (vLLM: 0.70 x 12Gi = 8.4Gi).
	a.freeMiB(t, 7000)
	a.clock.Advance(5 * time.Minute)
	stays(t, ctx, a, c, vllm, 0, "vLLM's 8.4Gi does not fit in 7000Mi with the margin")
	stays(t, ctx, a, c, ollama, 0, "Ollama waits for vLLM, restored first")

	a.freeMiB(t, 11000)
	poll(t, ctx, "vLLM then Ollama restored", func(ctx context.Context) (bool, error) {
		a.clock.Advance(10 * time.Second) // see waitAdvancing
		v, o := replicas(ctx, t, a.cs, vllm), replicas(ctx, t, a.cs, ollama)
		if o == 1 && v != 2 {
			t.Fatalf("Ollama restored before vLLM")
		}
		return v == 2 && o == 1, nil
	})
	stays(t, ctx, a, c, tts, 0, "released by alice")
	if rec := deployment(ctx, t, a.cs, tts).Annotations[workload.AnnotationReleasedBy]; rec != "alice" {
		t.Errorf("tts released-by = %q, want alice", rec)
	}
}

func TestArbiterActiveHours(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	a.annotate(t, ctx, vllm, map[string]string{"gpuslice.io/active-hours": "07:00-19:00", "gpuslice.io/time-zone": "Europe/Berlin"})
	// 21:00 UTC is 22:00 in Berlin: outside vLLM's hours.
	c := a.run(t, nil)
	a.waitReplicas(t, ctx, vllm, 0)
	if r := deployment(ctx, t, a.cs, vllm).Annotations[workload.AnnotationReleasedReason]; r != "outside its active hours 07:00-19:00 Europe/Berlin" {
		t.Errorf("reason %q", r)
	}
	stays(t, ctx, a, c, ollama, 1, "Ollama has no active hours")
	a.clock.Advance(9*time.Hour + 30*time.Minute) // 07:30 in Berlin
	a.waitAdvancing(t, ctx, vllm, 2)
}

// TestArbiterLowerMemoryNeedsRecreate: lower-memory on vLLM as the seed
// deploys it (RollingUpdate, whose surge starts the lowered pod beside the
// old one: on a real node the arbiter then lowered again every 12 s) is
// carried out as a scale to zero, with a warning that says to use Recreate.
func TestArbiterLowerMemoryNeedsRecreate(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	a.annotate(t, ctx, vllm, map[string]string{"gpuslice.io/preempt-action": "lower-memory=0.30"})
	a.run(t, nil)
	a.transcode(true)
	a.waitReplicas(t, ctx, vllm, 0)
	if v := configValue(ctx, t, a.cs); v != "0.70" {
		t.Errorf("GPU_MEMORY_UTILIZATION %s, want 0.70 untouched: vLLM was scaled to zero, not lowered", v)
	}
	poll(t, ctx, "a PolicyAdjusted event on vLLM", func(ctx context.Context) (bool, error) {
		for _, e := range a.events(t, ctx, vllm, arbiter.ReasonPolicyAdjusted) {
			if strings.Contains(e.Message, "Recreate") {
				return true, nil
			}
		}
		return false, nil
	})
}

func TestArbiterLowerMemory(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	a.lowerMemory(t, ctx, vllm)
	c := a.run(t, nil)
	a.transcode(true)
	poll(t, ctx, "vLLM lowered and restarted", func(ctx context.Context) (bool, error) {
		d := deployment(ctx, t, a.cs, vllm)
		return configValue(ctx, t, a.cs) == "0.30" && d.Annotations[workload.AnnotationLoweredFrom] == "0.70" &&
			d.Spec.Template.Annotations[workload.AnnotationRestartedAt] == d.Annotations[workload.AnnotationLoweredAt], nil
	})
	stays(t, ctx, a, c, vllm, 2, "lowering keeps the replicas")

	a.transcode(false)
	poll(t, ctx, "vLLM back at 0.70", func(ctx context.Context) (bool, error) {
		// Time passes: the rollout settles, then the hold-down runs out.
		a.clock.Advance(time.Minute)
		d := deployment(ctx, t, a.cs, vllm)
		_, lowered := d.Annotations[workload.AnnotationLoweredFrom]
		return configValue(ctx, t, a.cs) == "0.70" && !lowered, nil
	})
}

func TestArbiterLeaderElection(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	elect := func(id string) func(*arbiter.Options) {
		return func(o *arbiter.Options) {
			o.LeaderElection = arbiter.LeaderElection{Enabled: true, Namespace: "default", Name: "gpuslice-arbiter", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond}
		}
	}
	first, stopFirst := a.runStoppable(t, elect("arbiter-a"))
	poll(t, ctx, "arbiter-a to lead", func(context.Context) (bool, error) { return first.Leading(), nil })
	second := a.run(t, elect("arbiter-b"))
	settle(t, ctx, first, 5)
	if second.Leading() || second.Rounds() != 0 {
		t.Fatalf("arbiter-b acts while arbiter-a leads (rounds %d)", second.Rounds())
	}
	// The leader steps down (its lease released on shutdown); the standby
	// takes over and acts.
	stopFirst()
	poll(t, ctx, "arbiter-b to lead", func(context.Context) (bool, error) { return second.Leading(), nil })
	a.transcode(true)
	a.waitReplicas(t, ctx, vllm, 0)
}

// testLog discards the arbiter's log unless GPUSLICE_E2E_ARBITER_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("GPUSLICE_E2E_ARBITER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestArbiterForbidden: without RBAC the arbiter is not ready, and says
// what to grant.
func TestArbiterForbidden(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cfg := rest.CopyConfig(env.Cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:gpu-system:nobody"}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := arbiter.New(arbiter.Options{Client: cs, Log: testLog()})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var why string
	poll(t, ctx, "the arbiter to say what to grant", func(context.Context) (bool, error) {
		var ok bool
		ok, why = c.Readiness()
		if ok {
			t.Fatal("ready without permission to list anything")
		}
		return strings.Contains(why, "grant list and watch on"), nil
	})
	t.Log(why)
}

// TestArbiterDryRun: with --dry-run the arbiter says what it would do and
// changes nothing, not even to finish a lower-memory step a crash cut
// short; gpuslice restore undoes a lower-memory preemption.
func TestArbiterDryRun(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	// A lower-memory step cut short: the intent, without the fraction or
	// the restart, which a live arbiter would finish.
	unfinished := workload.LowerRecord{From: "0.70", To: "0.30", At: "2026-11-28T20:00:00Z", Node: "homelabai", Reason: "test"}
	a.annotate(t, ctx, vllm, unfinished.Annotations())
	c := a.run(t, func(o *arbiter.Options) { o.DryRun = true })
	a.transcode(true)
	// vLLM's unfinished lower-memory step is a preemption that never takes
	// effect: past the preempt timeout the arbiter would go on to Ollama.
	poll(t, ctx, "a WouldPreempt event", func(ctx context.Context) (bool, error) {
		a.clock.Advance(time.Minute)
		return len(a.events(t, ctx, ollama, arbiter.ReasonWouldPreempt)) > 0, nil
	})
	poll(t, ctx, "a PreemptionStuck event on vLLM", func(ctx context.Context) (bool, error) {
		return len(a.events(t, ctx, vllm, arbiter.ReasonPreemptionStuck)) > 0, nil
	})
	stays(t, ctx, a, c, ollama, 1, "dry run")
	stays(t, ctx, a, c, vllm, 2, "dry run")
	if hasReleaseAnnotations(deployment(ctx, t, a.cs, ollama).Annotations) {
		t.Error("dry run wrote a release record")
	}
	if v, d := configValue(ctx, t, a.cs), deployment(ctx, t, a.cs, vllm); v != "0.70" || d.Spec.Template.Annotations[workload.AnnotationRestartedAt] != "" {
		t.Errorf("dry run finished the lower-memory step: GPU_MEMORY_UTILIZATION %s, restartedAt %q", v, d.Spec.Template.Annotations[workload.AnnotationRestartedAt])
	}
	if _, found, err := arbiter.ReadJournal(ctx, a.cs, arbiter.JournalRef{Namespace: "default", Name: journal.DefaultName}); found || err != nil {
		t.Errorf("dry run wrote its journal (%v)", err)
	}

	// gpuslice restore undoes a lower-memory preemption.
	if _, err := a.cs.AppsV1().Deployments(vllm.Namespace).Patch(ctx, vllm.Name, types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/metadata/annotations/gpuslice.io~1lowered-from"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Lower(ctx, a.cs, vllm, ops.LowerOptions{Fraction: "0.30", Node: "homelabai", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if v := configValue(ctx, t, a.cs); v != "0.30" {
		t.Fatalf("lowered to %s, want 0.30", v)
	}
	out, err := gpuslice(t, a.env, "restore", "vllm-server", "-n", "ai-dev")
	if err != nil || !strings.Contains(out, "GPU_MEMORY_UTILIZATION 0.30 → 0.70") {
		t.Errorf("gpuslice restore of a lowered workload: %v\n%s", err, out)
	}
	d := deployment(ctx, t, a.cs, vllm)
	if _, lowered := d.Annotations[workload.AnnotationLoweredFrom]; lowered || configValue(ctx, t, a.cs) != "0.70" {
		t.Errorf("after restore: GPU_MEMORY_UTILIZATION %s, annotations %v", configValue(ctx, t, a.cs), d.Annotations)
	}
}
