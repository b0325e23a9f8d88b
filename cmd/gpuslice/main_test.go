package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// run executes the gpuslice command line in-process.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestEveryCommandHasHelp(t *testing.T) {
	root := newRootCommand()
	var paths [][]string
	var visit func(prefix []string, cmds []*cobra.Command)
	visit = func(prefix []string, cmds []*cobra.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, prefix...), c.Name())
			paths = append(paths, p)
			visit(p, c.Commands())
		}
	}
	visit(nil, root.Commands())
	for _, p := range paths {
		if p[len(p)-1] == "help" || p[len(p)-1] == "completion" {
			continue
		}
		out, err := run(t, "", append(p, "--help")...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("gpuslice %s --help: %v\n%s", strings.Join(p, " "), err, out)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	seed := filepath.Join("..", "..", "pkg", "pluginconfig", "testdata", "seed.yaml")
	out, err := run(t, "", "config", "validate", seed)
	if err != nil || !strings.Contains(out, "valid") || !strings.Contains(out, "nvidia.com/gpu.shared") {
		t.Errorf("seed config: %v\n%s", err, out)
	}
	bad := "version: v2\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replica: 8\n"
	out, err = run(t, bad, "config", "validate", "-")
	if err == nil {
		t.Fatalf("invalid config accepted:\n%s", out)
	}
	for _, want := range []string{"version", "replica", "replicas", "LINE"} {
		if !strings.Contains(out, want) {
			t.Errorf("problem table lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, bad, "config", "validate", "-", "-o", "json")
	var v pluginconfig.Validation
	if jerr := json.Unmarshal([]byte(out), &v); jerr != nil || err == nil || v.Valid || len(v.Problems) < 2 {
		t.Errorf("-o json: %v %v %+v\n%s", err, jerr, v, out)
	}
	if _, err := run(t, "", "config", "validate", "no-such-file.yaml"); err == nil || !strings.Contains(err.Error(), "no-such-file.yaml") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := run(t, "", "config", "validate"); err == nil {
		t.Error("validate without a file or --from-cluster succeeded")
	}
}

func TestConfigRenderMatchesSeed(t *testing.T) {
	out, err := run(t, "", "config", "render", "--replicas", "8", "--rename", "--config-only")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join("..", "..", "pkg", "pluginconfig", "testdata", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pluginconfig.Parse([]byte(out))
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	want, err := pluginconfig.Parse(seed)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("render --replicas 8 --rename:\n%s\nwant the seed's\n%s", out, seed)
	}
	out, err = run(t, "", "config", "render", "--replicas", "8", "--rename")
	if err != nil || !strings.Contains(out, "kind: ConfigMap") || !strings.Contains(out, "name: nvidia-device-plugin-config") || !strings.Contains(out, "namespace: kube-system") {
		t.Errorf("ConfigMap render: %v\n%s", err, out)
	}
	if _, err := run(t, "", "config", "render", "--replicas", "0"); err == nil {
		t.Error("replicas 0 rendered")
	}
}

// TestClusterCommands runs status and config validate --from-cluster
// against a real API server through --kubeconfig.
func TestClusterCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := localcluster.EnsureBinaries(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	c, err := localcluster.Start(ctx, localcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.AddNode(ctx, seed.HomelabAI()); err != nil {
		t.Fatal(err)
	}
	cm, err := pluginconfig.RenderConfigMap(pluginconfig.RenderOptions{Replicas: 8, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", "config", "validate", "--from-cluster", "--kubeconfig", c.Kubeconfig)
	if err != nil || !strings.Contains(out, "ConfigMap kube-system/nvidia-device-plugin-config: valid") {
		t.Errorf("validate --from-cluster: %v\n%s", err, out)
	}
	out, err = run(t, "", "status", "-o", "json", "--kubeconfig", c.Kubeconfig)
	var r ledger.Report
	if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil || len(r.Nodes) != 1 || r.Nodes[0].Name != "homelabai" {
		t.Fatalf("status -o json: %v %v\n%s", err, jerr, out)
	}
	out, err = run(t, "", "status", "--kubeconfig", c.Kubeconfig)
	if err != nil || !strings.Contains(out, "Available   -") || !strings.Contains(out, "8            100%") {
		t.Errorf("status table: %v\n%s", err, out)
	}
	if _, err := run(t, "", "status", "-o", "xml", "--kubeconfig", c.Kubeconfig); err == nil || !strings.Contains(err.Error(), "json or yaml") {
		t.Errorf("-o xml: %v", err)
	}
	if _, err := run(t, "", "status", "--node", "nope", "--kubeconfig", c.Kubeconfig); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("--node nope: %v", err)
	}
	checkWorkloadCompletion(ctx, t, c)
}

// checkWorkloadCompletion: the shell completes a workload argument with
// the namespace's GPU Deployments (for restore, the released ones), never
// with one that uses no GPU.
func checkWorkloadCompletion(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	released := seed.SharesDeployment("lab", "trainer-old", 1)
	released.Annotations = map[string]string{workload.AnnotationReleasedReplicas: "1"}
	for _, d := range []*appsv1.Deployment{seed.SharesDeployment("lab", "trainer", 2), seed.SharesDeployment("lab", "web", 0), released} {
		if _, err := c.Client.AppsV1().Deployments("lab").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{args: []string{"release", ""}, want: []string{"deploy/trainer\n", "deploy/trainer-old\n"}, not: []string{"web"}},
		{args: []string{"tune", "shares", "deploy/trainer-"}, want: []string{"deploy/trainer-old\n"}, not: []string{"deploy/trainer\n", "web"}},
		{args: []string{"doctor", "d"}, want: []string{"deploy/trainer\n"}, not: []string{"web"}},
		{args: []string{"restore", ""}, want: []string{"deploy/trainer-old\n"}, not: []string{"deploy/trainer\n", "web"}},
		{args: []string{"tune", "memory", "deploy/trainer", ""}, not: []string{"deploy/"}},
	} {
		out, err := run(t, "", append([]string{"__complete", "--kubeconfig", c.Kubeconfig, "-n", "lab"}, tc.args...)...)
		if err != nil {
			t.Fatalf("completing %q: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("completing %q: no %q in\n%s", tc.args, w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("completing %q: %q offered in\n%s", tc.args, n, out)
			}
		}
	}
}

func TestWebhookFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook"}, "no serving certificate"},
		{[]string{"webhook", "--tls-cert-file", filepath.Join(dir, "missing.crt"), "--tls-private-key-file", filepath.Join(dir, "missing.key")}, "missing.crt"},
		{[]string{"webhook", "--log-format", "xml"}, "--log-format"},
		{[]string{"webhook", "--config", filepath.Join(dir, "nope.yaml"), "--tls-cert-file", "x", "--tls-private-key-file", "y"}, "nope.yaml"},
		{[]string{"webhook", "--tls-min-version", "VersionTLS10"}, "use VersionTLS12 or VersionTLS13"},
		{[]string{"webhook", "--tls-cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA"}, "TLS_RSA_WITH_RC4_128_SHA is insecure"},
		{[]string{"webhook", "--max-concurrent-admissions", "-1"}, "give at least 1"},
	} {
		if _, err := run(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gpuslice %s: err = %v, want it to mention %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
