package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestDeployArbiter runs `gpuslice arbiter` exactly as the chart's arbiter
// Deployment does: its container args, its downward-API env, under its
// ServiceAccount through impersonation, with nothing but the chart's RBAC.
// On the reference cluster (a simulated kubelet, the stand-ins for Plex and
// dcgm-exporter) it must become ready, take its Lease, and when Plex turns
// unhealthy preempt Ollama (scale to zero) and vLLM (lower-memory, which
// writes its ConfigMap), with Events; once Plex is well again it restores
// both. Every API call the arbiter makes is thereby made under the chart's
// RBAC; pods/proxy (arbiter.agents) is left to the chart's unit test.
//
// Only the arbiter's ServiceAccount and RBAC are applied: the environment
// runs its own webhook, and no kubelet would run the Deployment's pods.
// The args get --kubeconfig and --as, and three overrides appended (the
// last flag wins): --listen-address on a free loopback port, and
// --plex-token-file at a local copy of the token the Secret would hold.
func TestDeployArbiter(t *testing.T) {
	a := startArbiterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a.lowerMemory(t, ctx, vllm)
	// Room for both restores beyond the threshold and its margin.
	a.freeMiB(t, 11000)
	// The nightly training, running, outside its hours by the real clock
	// the binary reads: suspended with its Job under the chart's RBAC.
	training := createCronJob(t, ctx, a.cs, "nightly-training", false)
	startJob(t, ctx, a.cs, training, "nightly-training-1", false)
	from := time.Now().UTC().Add(2 * time.Hour)
	a.annotateCronJob(t, ctx, training.Name, map[string]string{workload.AnnotationActiveHours: from.Format("15:04") + "-" + from.Add(time.Hour).Format("15:04"), workload.AnnotationTimeZone: "UTC"})

	ch, err := chart.Load(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chart.ParseValues(fmt.Sprintf(`
arbiter:
  enabled: true
  interval: 200ms
  holdDown: 2s
  unhealthyGrace: 1s
  dcgmExporters: [homelabai=%s]
  plex: {url: %q, workload: media/plex, tokenSecret: {name: plex, key: token}}
  # Least privilege: writes only where the preemptible workloads are. The
  # default ClusterRole grants a superset (TestChartArbiterWorkloadNamespaces).
  workloadNamespaces: {ai: {}, ai-dev: {configMaps: [vllm-config]}}`, a.dcgm.MetricsURL(), a.plex.URL))
	if err != nil {
		t.Fatal(err)
	}
	r, err := chart.Render(ch, chart.Options{Plain: true, Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.EnsureNamespace(ctx, a.cs, chart.DefaultNamespace); err != nil {
		t.Fatal(err)
	}
	k := newKubeAPI(t, a.env.Cluster.Config)
	rbac := []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
	for _, obj := range r.Objects() {
		if obj.GetLabels()["app.kubernetes.io/component"] == "arbiter" && slices.Contains(rbac, obj.GetKind()) {
			if err := k.apply(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
	}

	var d appsv1.Deployment
	fromUnstructured(t, r.Find("Deployment", "gpuslice-arbiter"), &d)
	pod := d.Spec.Template.Spec
	ctr := pod.Containers[0]
	podName := "gpuslice-arbiter-7d9f8b6c5-x2k4q"
	env := podEnv(t, ctr, map[string]string{"metadata.name": podName, "metadata.namespace": chart.DefaultNamespace})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("plex-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ctr.Args, func(s string) bool { return strings.HasPrefix(s, "--plex-token-file=") }) {
		t.Fatalf("args %q do not read the token Secret", ctr.Args)
	}
	listen := freeAddr(t)
	args := append(slices.Clone(ctr.Args),
		"--kubeconfig", a.env.Cluster.Kubeconfig,
		"--as", "system:serviceaccount:"+chart.DefaultNamespace+":"+pod.ServiceAccountName,
		"--listen-address", listen, "--plex-token-file", tokenFile)
	p := runArbiter(t, gpusliceBinary(t), args, env)

	until(ctx, t, "the arbiter's /readyz (informers synced under the chart's RBAC)", func(ctx context.Context) (bool, error) {
		if err := p.exitErr(); err != nil {
			return false, err
		}
		return getOK(ctx, "http://"+listen+"/readyz"), nil
	})
	until(ctx, t, "Lease gpu-system/gpuslice-arbiter held by "+podName, func(ctx context.Context) (bool, error) {
		l, err := a.cs.CoordinationV1().Leases(chart.DefaultNamespace).Get(ctx, "gpuslice-arbiter", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == podName, nil
	})
	until(ctx, t, "the CronJob and its Job suspended, its pod gone", func(ctx context.Context) (bool, error) {
		cj, job := getCronJob(t, ctx, a.cs, training.Name), getJob(t, ctx, a.cs, "nightly-training-1")
		pods, err := a.cs.CoreV1().Pods("ai").List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=nightly-training-1"})
		return err == nil && suspended(cj.Spec.Suspend) && suspended(job.Spec.Suspend) && len(pods.Items) == 0, err
	})
	settleProcess(t, ctx, listen, 5)
	if got := replicas(ctx, t, a.cs, ollama); got != 1 {
		t.Fatalf("Ollama has %d replicas while Plex is well, want 1", got)
	}

	if err := a.kubelet.SetNotReady(ctx, func(p *corev1.Pod) bool { return p.Namespace == "media" }); err != nil {
		t.Fatal(err)
	}
	a.waitReplicas(t, ctx, ollama, 0)
	if d := deployment(ctx, t, a.cs, ollama); d.Annotations[workload.AnnotationReleasedBy] != arbiter.Identity || d.Annotations[workload.AnnotationReleasedReplicas] != "1" {
		t.Errorf("Ollama's release record %v", d.Annotations)
	}
	until(ctx, t, "vLLM lowered to 0.30 in its ConfigMap and restarted", func(ctx context.Context) (bool, error) {
		d := deployment(ctx, t, a.cs, vllm)
		return configValue(ctx, t, a.cs) == "0.30" && d.Annotations[workload.AnnotationLoweredFrom] == "0.70" &&
			d.Spec.Template.Annotations[workload.AnnotationRestartedAt] == d.Annotations[workload.AnnotationLoweredAt], nil
	})
	for _, ref := range []workload.Ref{ollama, vllm} {
		until(ctx, t, "a Preempted Event on "+ref.Qualified(), func(ctx context.Context) (bool, error) {
			return len(a.events(t, ctx, ref, arbiter.ReasonPreempted)) > 0, nil
		})
	}

	if err := a.kubelet.SetNotReady(ctx, func(*corev1.Pod) bool { return false }); err != nil {
		t.Fatal(err)
	}
	until(ctx, t, "vLLM back at 0.70 and Ollama at 1 replica", func(ctx context.Context) (bool, error) {
		d := deployment(ctx, t, a.cs, vllm)
		_, lowered := d.Annotations[workload.AnnotationLoweredFrom]
		return configValue(ctx, t, a.cs) == "0.70" && !lowered && replicas(ctx, t, a.cs, ollama) == 1, nil
	})
	until(ctx, t, "a Restored Event on "+ollama.Qualified(), func(ctx context.Context) (bool, error) {
		return len(a.events(t, ctx, ollama, arbiter.ReasonRestored)) > 0, nil
	})

	body := httpGet(t, "http://"+listen+"/metrics")
	for _, want := range []string{"gpuslice_arbiter_leader 1", `gpuslice_arbiter_steps_total{kind="preempt",result="done",workload="ai-dev/deployment/vllm-server"} 1`,
		`gpuslice_arbiter_steps_total{kind="preempt",result="done",workload="ai/deployment/ollama"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// A refusal the arbiter survives (an Event it could not write) shows
	// only in its log.
	if log := p.log(); regexp.MustCompile(`(?i)forbidden`).MatchString(log) {
		t.Errorf("the API server refused the arbiter something under the chart's RBAC:\n%s", log)
	}
}

// podEnv resolves the container's env as the kubelet would, for the
// downward-API fields given and the container's own memory limit; any
// other kind of value fails the test.
func podEnv(t *testing.T, ctr corev1.Container, fields map[string]string) []string {
	t.Helper()
	var env []string
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && fields[e.ValueFrom.FieldRef.FieldPath] != "":
			env = append(env, e.Name+"="+fields[e.ValueFrom.FieldRef.FieldPath])
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" &&
			e.ValueFrom.ResourceFieldRef.ContainerName == "" && e.ValueFrom.ResourceFieldRef.Divisor.IsZero():
			// The kubelet writes the limit in bytes, as GOMEMLIMIT reads it.
			env = append(env, e.Name+"="+strconv.FormatInt(ctr.Resources.Limits.Memory().Value(), 10))
		default:
			t.Fatalf("env %s: cannot resolve %+v here", e.Name, e.ValueFrom)
		}
	}
	return env
}

// settleProcess waits for n more rounds of a running arbiter, by its
// gpuslice_arbiter_rounds_total.
func settleProcess(t *testing.T, ctx context.Context, listen string, n int) {
	t.Helper()
	rounds := func() int {
		m := regexp.MustCompile(`(?m)^gpuslice_arbiter_rounds_total (\d+)`).FindStringSubmatch(httpGet(t, "http://"+listen+"/metrics"))
		if m == nil {
			return 0
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	target := rounds() + n
	until(ctx, t, fmt.Sprintf("%d arbiter rounds", n), func(context.Context) (bool, error) { return rounds() >= target, nil })
}

// arbiterRun is a `gpuslice arbiter` process with its log in a file.
type arbiterRun struct {
	logPath string
	exited  chan error
}

func (p *arbiterRun) exitErr() error {
	select {
	case err := <-p.exited:
		return fmt.Errorf("the arbiter exited: %v", err)
	default:
		return nil
	}
}

func (p *arbiterRun) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// runArbiter starts the binary with exactly env added and stops it
// (SIGTERM, as the kubelet does) when the test ends, logging its output
// if the test failed.
func runArbiter(t *testing.T, bin string, args, env []string) *arbiterRun {
	t.Helper()
	p := &arbiterRun{logPath: filepath.Join(t.TempDir(), "arbiter.log"), exited: make(chan error, 1)}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.exited <- err
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("arbiter %q log:\n%s", args, p.log())
		}
	})
	return p
}
