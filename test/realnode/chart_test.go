package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/image"
	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
	"github.com/gpuslice/gpuslice/internal/version"
)

const fieldManager = "gpuslice-realnode-test"

var (
	installOnce sync.Once
	installErr  error
	// installed is the image the chart runs: its labels.
	installed map[string]string
)

// installChart builds the gpuslice image with hack/image's code, imports
// it into the node's containerd as a K3s user would (ctr -n k8s.io images
// import), and applies the chart rendered with its defaults, plus the
// RuntimeClass nvidia K3s ships. It waits for the webhook Deployment to be
// available. Once per run: later tests build on the install.
func installChart(t *testing.T) {
	t.Helper()
	n := realNode(t)
	installOnce.Do(func() { installErr = install(n) })
	if installErr != nil {
		t.Fatal(installErr)
	}
}

func install(n *rn.RealNode) error {
	// Cold (CI), the image's static build compiles the whole module again.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	version, err := image.ChartVersion(root)
	if err != nil {
		return err
	}
	spec := image.GpusliceSpec(root, version, image.GitCommit(ctx, root))
	img, err := image.Build(ctx, spec, image.HostPlatform())
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	installed = cfg.Config.Labels
	file := filepath.Join(n.NodeDir(), "images", "gpuslice.tar")
	if err := image.WriteTarball(file, spec.Ref, img); err != nil {
		return err
	}
	if err := n.ImportImage(ctx, file); err != nil {
		return err
	}
	r, err := renderChart(n, true)
	if err != nil {
		return err
	}
	if err := demo.EnsureNamespace(ctx, n.Client, chart.DefaultNamespace); err != nil {
		return err
	}
	if err := applyAll(ctx, n, r.Objects()); err != nil {
		return err
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
	if _, err := n.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating RuntimeClass nvidia: %w", err)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Find("Deployment", "gpuslice-webhook").Object, &d); err != nil {
		return err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := n.Client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d/%d available", got.Status.AvailableReplicas, *d.Spec.Replicas)
		return got.Status.AvailableReplicas == *d.Spec.Replicas, nil
	})
	if err != nil {
		pods, _ := n.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{})
		var states []string
		for _, p := range pods.Items {
			states = append(states, fmt.Sprintf("%s %s %v%s", p.Name, p.Status.Phase, p.Status.ContainerStatuses, events(ctx, n, p.Namespace, p.Name)))
		}
		return fmt.Errorf("the webhook Deployment %s/%s never became available (%s): %w\npods:\n%s", d.Namespace, d.Name, last, err, strings.Join(states, "\n"))
	}
	// Ready pods are not yet a routed Service: kube-proxy programs the
	// ClusterIP once it sees the endpoints. The API server calling the
	// webhook for a dry-run pod is the condition that matters.
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := mutateProbe(ctx, n)
		if err != nil {
			last = err.Error()
		}
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the API server never reached the webhook through its Service: %w (last: %s)", err, last)
	}
	return nil
}

// agentDaemonSet is the chart's agent DaemonSet name.
const agentDaemonSet = "gpuslice-agent"

// renderChart renders the chart with its defaults, except that the agent
// loads the node's stand-in NVML (--nvml-library, the chart's
// agent.nvmlLibrary) from its folder, mounted where the NVIDIA container
// runtime would mount the driver's library on a GPU node. hostPID false
// is the chart's other mode: the host's /proc at /host/proc, where the
// stand-in library looks for its processes too.
func renderChart(n *rn.RealNode, hostPID bool) (*chart.Rendered, error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	ch, err := chart.Load(root)
	if err != nil {
		return nil, err
	}
	r, err := chart.Render(ch, chart.Options{Plain: true, Values: map[string]any{
		"agent": map[string]any{"nvmlLibrary": n.NVML.Library, "hostPID": hostPID},
	}})
	if err != nil {
		return nil, err
	}
	obj := r.Find("DaemonSet", agentDaemonSet)
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &ds); err != nil {
		return nil, err
	}
	n.NVML.Mount(&ds.Spec.Template.Spec, "agent", false)
	if !hostPID {
		c := &ds.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: nvmltest.EnvProcRoot, Value: "/host/proc"})
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&ds)
	if err != nil {
		return nil, err
	}
	obj.Object = u
	return r, nil
}

// mutateProbe creates an annotated pod as a dry run, which the API server
// sends to the webhook through its Service.
func mutateProbe(ctx context.Context, n *rn.RealNode) (*corev1.Pod, error) {
	p := testboxPod("default", "probe")
	p.Annotations = map[string]string{"gpu-directories": "nvidia"}
	return n.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// applyAll is kubectl apply --server-side of each object, in order.
func applyAll(ctx context.Context, n *rn.RealNode, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(n.Config)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(n.Config)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("no resource for %s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if obj.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// gpusliceBinary builds the gpuslice command for this test run, in the
// node's folder (removed when the node stops).
var gpusliceBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(node.NodeDir(), "gpuslice")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gpuslice/gpuslice/cmd/gpuslice")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gpuslice: %w\n%s", err, out)
	}
	return bin, nil
})

// gpuslice runs the gpuslice command against the node's API server.
func gpuslice(ctx context.Context, t *testing.T, n *rn.RealNode, args ...string) (string, error) {
	t.Helper()
	bin, err := gpusliceBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", n.Kubeconfig)...).CombinedOutput()
	return string(out), err
}

// TestChartWebhookFromImage: the chart's webhook runs from the built image
// on the real node, the API server calls it through its Service (and
// kube-proxy), and gpuslice doctor finds the install healthy.
func TestChartWebhookFromImage(t *testing.T) {
	n := realNode(t)
	installChart(t)
	ctx := testContext(t, 3*time.Minute)
	pods, err := n.Client.CoreV1().Pods(chart.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no webhook pods")
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			if !strings.Contains(c.Image, "ghcr.io/gpuslice/gpuslice:") {
				t.Errorf("webhook pod %s runs %s, want the built ghcr.io/gpuslice/gpuslice image", p.Name, c.Image)
			}
		}
	}
	// The binary in the running container says what the image's labels say.
	var v version.Info
	out := execIn(ctx, t, n, &pods.Items[0], "/gpuslice", "version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("gpuslice version -o json in the webhook pod: %v: %s", err, out)
	}
	if v.Version != installed[image.LabelVersion] || v.Commit != installed[image.LabelRevision] || v.Version == "dev" {
		t.Errorf("gpuslice version in the image: %+v; the image's labels: version %q, revision %q", v, installed[image.LabelVersion], installed[image.LabelRevision])
	}
	// The API server mutates an annotated pod only by calling the webhook.
	got, err := mutateProbe(ctx, n)
	if err != nil {
		t.Fatalf("creating an annotated pod (dry run) through the webhook: %v", err)
	}
	if len(got.Spec.Volumes) < 3 {
		t.Errorf("the webhook did not inject the devices: volumes %v", got.Spec.Volumes)
	}
	out, err = gpuslice(ctx, t, n, "doctor")
	if err != nil {
		t.Errorf("gpuslice doctor on the real node's install: %v\n%s", err, out)
	}
	t.Logf("gpuslice doctor:\n%s", out)
	// The agent DaemonSet runs from the same image, Ready: it loaded the
	// stand-in NVML and listed the node's pods (TestAgentOnRealNode).
	waitAgentReady(ctx, t, n, true)
}
