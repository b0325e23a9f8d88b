package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/pkg/ops"
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
// it returns the checkpoint's name, or "" when the process finished its
// work in fewer.
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
			return ""
		}
	}
}

// TestArbiterSurvivesKill kills the arbiter with SIGKILL at every
// checkpoint between its writes, while preempting and while restoring, and
// checks that a fresh arbiter converges with no replica count lost.
func TestArbiterSurvivesKill(t *testing.T) {
	a := startArbiterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	released := func(ref ops.Ref, was int32) func(context.Context) bool {
		return func(ctx context.Context) bool {
			d := deployment(ctx, t, a.cs, ref)
			return *d.Spec.Replicas == 0 && d.Annotations[ops.AnnotationReleasedReplicas] == fmt.Sprint(was)
		}
	}
	restored := func(ref ops.Ref, want int32) func(context.Context) bool {
		return func(ctx context.Context) bool {
			d := deployment(ctx, t, a.cs, ref)
			return *d.Spec.Replicas == want && !hasReleaseAnnotations(d.Annotations)
		}
	}
	bothReleased := func(ctx context.Context) bool { return released(vllm, 2)(ctx) && released(ollama, 1)(ctx) }
	bothRestored := func(ctx context.Context) bool { return restored(vllm, 2)(ctx) && restored(ollama, 1)(ctx) }

	// Preempting Ollama then vLLM is 3 checkpoints each; restoring the same.
	for phase, tc := range []struct {
		transcode bool
		start     func(context.Context) bool
		done      func(context.Context) bool
	}{{true, bothRestored, bothReleased}, {false, bothReleased, bothRestored}} {
		for n := 1; n <= 6; n++ {
			// From the phase's starting state, with every pod settled.
			a.transcode(!tc.transcode)
			a.converge(t, ctx, tc.start)
			for _, w := range []struct {
				ref  ops.Ref
				want int32
			}{{vllm, 2}, {ollama, 1}} {
				if phase == 1 {
					w.want = 0
				}
				a.waitReplicas(t, ctx, w.ref, w.want)
			}
			a.transcode(tc.transcode)

			at := a.startProcess(t, true).killAt(t, ctx, n, tc.done)
			t.Logf("%s phase %d: killed at checkpoint %d (%s)", time.Now().Format("15:04:05.000"), phase, n, at)
			// Whatever the moment, every record says what it must.
			for _, w := range []struct {
				ref  ops.Ref
				want int32
			}{{vllm, 2}, {ollama, 1}} {
				d := deployment(ctx, t, a.cs, w.ref)
				if rec := d.Annotations[ops.AnnotationReleasedReplicas]; !(rec == fmt.Sprint(w.want) && *d.Spec.Replicas == 0 || rec == "" && *d.Spec.Replicas == w.want) {
					t.Fatalf("killed at %d (%s): %s has replicas %d and record %q", n, at, w.ref.Qualified(), *d.Spec.Replicas, rec)
				}
			}
			a.converge(t, ctx, tc.done)
		}
	}
}

// converge runs a fresh arbiter until done, then stops it.
func (a *arbiterEnv) converge(t *testing.T, ctx context.Context, done func(context.Context) bool) {
	t.Helper()
	p := a.startProcess(t, false)
	poll(t, ctx, "the arbiter to converge", func(ctx context.Context) (bool, error) { return done(ctx), nil })
	p.kill()
}
