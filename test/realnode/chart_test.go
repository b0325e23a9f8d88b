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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/chart"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/image"
	"github.com/gpuslice/gpuslice/internal/version"
)

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
	var err error
	installed, err = n.InstallChart(ctx, nil)
	return err
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
	got, err := n.MutateProbe(ctx)
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
