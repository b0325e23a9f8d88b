package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// arbiterProcess is `gpuslice arbiter` run as its own process, so that it
// can be killed with SIGKILL between any two of its writes.
type arbiterProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// checkpoints receives each checkpoint the process stops at.
	checkpoints chan string
	exited      chan struct{}
}

func (a *arbiterEnv) startProcess(t *testing.T, faults bool) *arbiterProcess {
	t.Helper()
	args := []string{"arbiter", "--kubeconfig", a.env.Cluster.Kubeconfig,
		"--listen-address", "127.0.0.1:0", "--interval", "50ms", "--hold-down", "0s",
		"--plex-url", a.plex.URL, "--plex-workload", "media/plex",
		"--leader-elect-namespace", "default", "--leader-elect-identity", "arbiter-0"}
	if faults {
		args = append(args, "--fault-checkpoints")
	}
	cmd := exec.Command(gpusliceBinary(t), args...)
	cmd.Env = append(cmd.Environ(), "PLEX_TOKEN=plex-token")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &arbiterProcess{cmd: cmd, stdin: stdin, checkpoints: make(chan string, 16), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if os.Getenv("GPUSLICE_E2E_ARBITER_LOG") != "" {
				fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), sc.Text())
			}
			if name, ok := strings.CutPrefix(sc.Text(), "gpuslice-checkpoint "); ok {
				p.checkpoints <- name
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill is kill -9.
func (p *arbiterProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// killAt lets the process pass n-1 checkpoints and kills it at the n-th;
// it returns the checkpoint's name. When the work needs fewer checkpoints
// the process is killed once it is done.
func (p *arbiterProcess) killAt(t *testing.T, ctx context.Context, n int, done func(context.Context) bool) string {
	t.Helper()
	for i := 1; ; i++ {
		var name string
		select {
		case name = <-p.checkpoints:
		case <-p.exited:
			t.Fatal("arbiter exited by itself")
		case <-ctx.Done():
			t.Fatal("arbiter reached no checkpoint")
		}
		if i == n {
			p.kill()
			return name
		}
		fmt.Fprintln(p.stdin)
		if i == n-1 && done(ctx) {
			// Nothing more to do: the arbiter idles with no checkpoint.
			p.kill()
			return "after its last write"
		}
	}
}

// faultScenario is what killing the arbiter is tried on: a state where
// everything is restored, one where the transcode has preempted
// everything, an invariant that must hold whenever the process dies, and
// how many checkpoints each phase passes.
type faultScenario struct {
	restored, preempted func(context.Context) bool
	invariant           func(ctx context.Context) error
	checkpoints         int
}

// killEverywhere kills the arbiter with SIGKILL at every checkpoint
// between its writes, while preempting and while restoring, checks the
// invariant at once, and that a fresh arbiter then converges.
func killEverywhere(t *testing.T, a *arbiterEnv, sc faultScenario) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for phase, tc := range []struct {
		transcode   bool
		start, done func(context.Context) bool
	}{{true, sc.restored, sc.preempted}, {false, sc.preempted, sc.restored}} {
		for n := 1; n <= sc.checkpoints; n++ {
			// From the phase's starting state, with every pod settled.
			a.transcode(!tc.transcode)
			a.converge(t, ctx, tc.start)
			a.waitSettled(t, ctx)
			a.transcode(tc.transcode)

			at := a.startProcess(t, true).killAt(t, ctx, n, tc.done)
			t.Logf("phase %d: killed at checkpoint %d (%s)", phase, n, at)
			if err := sc.invariant(ctx); err != nil {
				t.Fatalf("killed at checkpoint %d (%s): %v", n, at, err)
			}
			a.converge(t, ctx, tc.done)
		}
	}
}

// waitSettled waits until every Deployment has the pods its spec asks for.
func (a *arbiterEnv) waitSettled(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, ref := range []workload.Ref{vllm, ollama} {
		a.waitReplicas(t, ctx, ref, replicas(ctx, t, a.cs, ref))
	}
}

// releasedOrNot is the scale-to-zero invariant: a workload either runs its
// replicas with no record, or runs none with a record of them.
func releasedOrNot(ctx context.Context, t *testing.T, a *arbiterEnv, ref workload.Ref, want int32) error {
	d := deployment(ctx, t, a.cs, ref)
	if rec := d.Annotations[workload.AnnotationReleasedReplicas]; !(rec == fmt.Sprint(want) && *d.Spec.Replicas == 0 || rec == "" && *d.Spec.Replicas == want) {
		return fmt.Errorf("%s has replicas %d and record %q: a replica count is lost", ref.Qualified(), *d.Spec.Replicas, rec)
	}
	return nil
}

func released(ctx context.Context, t *testing.T, a *arbiterEnv, ref workload.Ref, was int32) bool {
	d := deployment(ctx, t, a.cs, ref)
	return *d.Spec.Replicas == 0 && d.Annotations[workload.AnnotationReleasedReplicas] == fmt.Sprint(was)
}

func restored(ctx context.Context, t *testing.T, a *arbiterEnv, ref workload.Ref, want int32) bool {
	d := deployment(ctx, t, a.cs, ref)
	return *d.Spec.Replicas == want && !hasReleaseAnnotations(d.Annotations)
}

// TestArbiterSurvivesKill: scale to zero, Ollama then vLLM, 3 checkpoints
// each.
func TestArbiterSurvivesKill(t *testing.T) {
	a := startArbiterEnv(t)
	killEverywhere(t, a, faultScenario{
		restored: func(ctx context.Context) bool {
			return restored(ctx, t, a, vllm, 2) && restored(ctx, t, a, ollama, 1)
		},
		preempted: func(ctx context.Context) bool {
			return released(ctx, t, a, vllm, 2) && released(ctx, t, a, ollama, 1)
		},
		invariant: func(ctx context.Context) error {
			return errors.Join(releasedOrNot(ctx, t, a, vllm, 2), releasedOrNot(ctx, t, a, ollama, 1))
		},
		checkpoints: 6,
	})
}

// TestArbiterLowerMemorySurvivesKill: vLLM preempted by lowering
// GPU_MEMORY_UTILIZATION (intent, ConfigMap, restart: 5 checkpoints),
// Ollama by scale to zero (3).
func TestArbiterLowerMemorySurvivesKill(t *testing.T) {
	a := startArbiterEnv(t)
	a.lowerMemory(t, testContext(t), vllm)
	lowered := func(ctx context.Context) bool {
		d := deployment(ctx, t, a.cs, vllm)
		return configValue(ctx, t, a.cs) == "0.30" && d.Annotations[workload.AnnotationLoweredFrom] == "0.70" &&
			d.Spec.Template.Annotations[workload.AnnotationRestartedAt] == d.Annotations[workload.AnnotationLoweredAt]
	}
	raised := func(ctx context.Context) bool {
		_, lowered := deployment(ctx, t, a.cs, vllm).Annotations[workload.AnnotationLoweredFrom]
		return configValue(ctx, t, a.cs) == "0.70" && !lowered
	}
	killEverywhere(t, a, faultScenario{
		restored:  func(ctx context.Context) bool { return raised(ctx) && restored(ctx, t, a, ollama, 1) },
		preempted: func(ctx context.Context) bool { return lowered(ctx) && released(ctx, t, a, ollama, 1) },
		invariant: func(ctx context.Context) error {
			// The original fraction is never lost: in the ConfigMap, or in
			// the record.
			d := deployment(ctx, t, a.cs, vllm)
			if v := configValue(ctx, t, a.cs); v != "0.70" && d.Annotations[workload.AnnotationLoweredFrom] != "0.70" {
				return fmt.Errorf("GPU_MEMORY_UTILIZATION is %s and no record says it was 0.70", v)
			}
			return errors.Join(releasedOrNot(ctx, t, a, vllm, 2), releasedOrNot(ctx, t, a, ollama, 1))
		},
		checkpoints: 8,
	})
}

// converge runs a fresh arbiter until done, then stops it.
func (a *arbiterEnv) converge(t *testing.T, ctx context.Context, done func(context.Context) bool) {
	t.Helper()
	p := a.startProcess(t, false)
	poll(t, ctx, "the arbiter to converge", func(ctx context.Context) (bool, error) { return done(ctx), nil })
	p.kill()
}
