// Package demo plays the reference cluster on a local control plane: node
// homelabai with one RTX 3080 Ti time-sliced into 8 shares, the
// device-injection webhook registered as in the seed, and Plex asking for its
// devices.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/webhook"
)

// Options configure a demo run.
type Options struct {
	// Out receives the story; Progress the build and start-up lines.
	Out, Progress io.Writer
	Log           *slog.Logger
	// Keep leaves the cluster running until ctx ends.
	Keep bool
	// Result, when set, receives what the demo produced instead of the
	// tables being printed, for -o json|yaml.
	Result func(*Result) error
	// Evening, when set, plays more chapters on the running cluster after
	// the ledger (the arbiter's evening, which this package cannot import:
	// pkg/ops's tests import it).
	Evening func(ctx context.Context, env *Env, res *Result) error
}

// Result is what the demo shows: the Plex pod as the webhook left it, and
// the ledger before and after the AI-dev deployment.
type Result struct {
	PlexPod *corev1.Pod    `json:"plexPod"`
	Before  *ledger.Report `json:"before"`
	After   *ledger.Report `json:"after"`
	// Evening is what Options.Evening played, a chapter at a time.
	Evening []Chapter `json:"evening,omitempty"`
}

// Chapter is one step of a story told on the cluster: what happened, what
// the cluster recorded (events), and the ledger after it.
type Chapter struct {
	Title  string         `json:"title"`
	Events []string       `json:"events,omitempty"`
	Ledger *ledger.Report `json:"ledger"`
}

// Env is a local control plane with the webhook running and registered,
// shared by the demo and the end-to-end tests.
type Env struct {
	Cluster *localcluster.Cluster
	// WebhookURL is where the API server reaches the webhook.
	WebhookURL string
	// CA signed the webhook's certificate; it is the registration's caBundle.
	CA       *certs.CA
	CertFile string
	KeyFile  string
	stop     context.CancelFunc
	done     chan error
}

// StartEnv starts the control plane (scheduler and controller manager too),
// registers node homelabai, and runs and registers the webhook on loopback
// with certificates from files, as cert-manager would provide them.
func StartEnv(ctx context.Context, opts localcluster.Options, log *slog.Logger) (env *Env, err error) {
	opts.Scheduler, opts.ControllerManager = true, true
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	env = &Env{Cluster: c}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()
	if _, err := c.AddNode(ctx, seed.HomelabAI()); err != nil {
		return nil, err
	}
	if env.CA, err = certs.NewCA("gpuslice demo webhook CA", 24*time.Hour); err != nil {
		return nil, err
	}
	env.CertFile, env.KeyFile = c.Dir+"/webhook.crt", c.Dir+"/webhook.key"
	if err := env.IssueWebhookCert(time.Hour); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the webhook: %w", err)
	}
	env.WebhookURL = "https://127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/mutate"
	metrics := webhook.NewMetrics()
	source, err := certs.NewFileSource(env.CertFile, env.KeyFile, metrics.CertificateLoaded)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := &webhook.Server{
		Handler: webhook.NewHandler(inject.DefaultConfig(registration.DefaultNamespace), metrics, log),
		Metrics: metrics, Certs: source, Log: log, ShutdownGrace: time.Second,
	}
	sctx, cancel := context.WithCancel(context.Background())
	env.stop, env.done = cancel, make(chan error, 1)
	go func() { env.done <- srv.Serve(sctx, ln, nil) }()
	mwc := registration.Build(registration.Options{URL: env.WebhookURL, CABundle: env.CA.CertPEM})
	if err := registration.Apply(ctx, c.Client, mwc); err != nil {
		return nil, err
	}
	if err := ensureRuntimeClass(ctx, c.Client); err != nil {
		return nil, err
	}
	return env, nil
}

// IssueWebhookCert writes a new serving certificate for 127.0.0.1 over the
// webhook's files: a rotation, as cert-manager does it.
func (e *Env) IssueWebhookCert(validFor time.Duration) error {
	pair, err := e.CA.Issue(certs.LeafOptions{CommonName: "127.0.0.1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, ValidFor: validFor})
	if err != nil {
		return err
	}
	return pair.WriteFiles(e.CertFile, e.KeyFile)
}

// StopWebhook stops the webhook server, leaving its registration in place:
// the outage that failurePolicy Fail must handle.
func (e *Env) StopWebhook() error {
	if e.stop == nil {
		return nil
	}
	e.stop()
	e.stop = nil
	return <-e.done
}

// Stop ends the webhook and the control plane.
func (e *Env) Stop() {
	_ = e.StopWebhook()
	e.Cluster.Stop()
}

func ensureRuntimeClass(ctx context.Context, cs kubernetes.Interface) error {
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
	if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating RuntimeClass nvidia: %w", err)
	}
	return nil
}

// EnsureNamespace creates a namespace if it is missing.
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// WarningRecorder collects the warnings the API server relays from webhooks.
type WarningRecorder struct{ Warnings []string }

// HandleWarningHeader implements rest.WarningHandler.
func (w *WarningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.Warnings = append(w.Warnings, text)
}

// ClientWithWarnings returns a client whose warnings land in rec.
func ClientWithWarnings(cfg *rest.Config, rec *WarningRecorder) (kubernetes.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rec
	return kubernetes.NewForConfig(cfg)
}

// Run plays the demo.
func Run(ctx context.Context, o Options) error {
	if _, err := localcluster.EnsureBinaries(ctx, o.Progress); err != nil {
		return err
	}
	fmt.Fprintln(o.Progress, "control plane: starting etcd, kube-apiserver, kube-scheduler and kube-controller-manager "+localcluster.KubernetesVersion+"...")
	start := time.Now()
	env, err := StartEnv(ctx, localcluster.Options{}, o.Log)
	if err != nil {
		return err
	}
	defer env.Stop()
	fmt.Fprintf(o.Progress, "control plane: ready in %s; node homelabai advertises nvidia.com/gpu.shared: 8\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(o.Progress, "webhook: gpu-directory-injector serving at %s, registered with failurePolicy Fail\n\n", env.WebhookURL)

	res := &Result{}
	warnings, err := createPlexPod(ctx, env, res)
	if err != nil {
		return err
	}
	if err := Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		return err
	}
	if res.Before, err = snapshot.Ledger(ctx, env.Cluster.Client, ledger.Options{}); err != nil {
		return err
	}
	if err := Deploy(ctx, env.Cluster, seed.VLLMWorkload()); err != nil {
		return err
	}
	if res.After, err = snapshot.Ledger(ctx, env.Cluster.Client, ledger.Options{}); err != nil {
		return err
	}
	if o.Evening != nil {
		if err := o.Evening(ctx, env, res); err != nil {
			return err
		}
	}
	if o.Result != nil {
		return o.Result(res)
	}
	if err := writeStory(o.Out, res, warnings); err != nil {
		return err
	}
	if o.Keep {
		fmt.Fprintf(o.Out, "\nThe cluster keeps running at %s until Ctrl-C. Try:\n  export KUBECONFIG=%s\n  go run ./cmd/gpuslice status\n", env.Cluster.Config.Host, env.Cluster.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

// createPlexPod creates the seed's Plex pod, as a user would with kubectl,
// keeps what the API server stored and the webhook's warnings, then removes
// it: the seed's workloads that follow run Plex as a Deployment.
func createPlexPod(ctx context.Context, env *Env, res *Result) ([]string, error) {
	cs := env.Cluster.Client
	if err := EnsureNamespace(ctx, cs, "media"); err != nil {
		return nil, err
	}
	rec := &WarningRecorder{}
	wc, err := ClientWithWarnings(env.Cluster.Config, rec)
	if err != nil {
		return nil, err
	}
	if _, err := wc.CoreV1().Pods("media").Create(ctx, seed.PlexPod(), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the Plex pod: %w", err)
	}
	if _, err := WaitBound(ctx, cs, "media", "plex"); err != nil {
		return nil, err
	}
	if res.PlexPod, err = env.Cluster.SetPodRunning(ctx, "media", "plex", true); err != nil {
		return nil, err
	}
	// No kubelet confirms a graceful deletion, so delete at once.
	if err := cs.CoreV1().Pods("media").Delete(ctx, "plex", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		return nil, fmt.Errorf("removing the demo's Plex pod: %w", err)
	}
	return rec.Warnings, nil
}

// writeStory prints the demo's three steps.
func writeStory(w io.Writer, res *Result, warnings []string) error {
	fmt.Fprintln(w, "== 1. The device-injection webhook gives the seed's Plex pod its GPU ==")
	if err := WritePodReport(w, res.PlexPod, warnings); err != nil {
		return err
	}
	fmt.Fprintln(w, "\n== 2. GPU allocation before the AI-dev deployment (gpuslice status) ==")
	if err := ledger.WriteTable(w, res.Before, false); err != nil {
		return err
	}
	fmt.Fprintln(w, "\n== 3. After the AI-dev deployment: vLLM, hybrid, 2 shares, GPU_MEMORY_UTILIZATION 0.70 ==")
	if err := ledger.WriteTable(w, res.After, false); err != nil {
		return err
	}
	for i, ch := range res.Evening {
		fmt.Fprintf(w, "\n== %d. %s ==\n", 4+i, ch.Title)
		for _, e := range ch.Events {
			fmt.Fprintln(w, "event: "+e)
		}
		if err := ledger.WriteTable(w, ch.Ledger, false); err != nil {
			return err
		}
	}
	return nil
}

// WaitBound waits for the scheduler to bind the pod to a node.
func WaitBound(ctx context.Context, cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return p.Spec.NodeName != "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for pod %s/%s to be scheduled: %w", ns, name, err)
	}
	return pod, nil
}
