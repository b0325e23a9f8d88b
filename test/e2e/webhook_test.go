package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// The seed's "What the Webhook Injects", verbatim; the API server defaults
// an absent hostPath type to "" (no check), as it does for any pod.
var (
	seedVolumes = []corev1.Volume{
		{Name: "nvidia0", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/nvidia0", Type: ptr.To(corev1.HostPathUnset)}}},
		{Name: "nvidiactl", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/nvidiactl", Type: ptr.To(corev1.HostPathUnset)}}},
		{Name: "nvidia-uvm", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/nvidia-uvm", Type: ptr.To(corev1.HostPathUnset)}}},
	}
	seedMounts = []corev1.VolumeMount{
		{Name: "nvidia0", MountPath: "/dev/nvidia0"},
		{Name: "nvidiactl", MountPath: "/dev/nvidiactl"},
		{Name: "nvidia-uvm", MountPath: "/dev/nvidia-uvm"},
	}
)

func TestWebhookOnAPIServer(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	for _, ns := range []string{"media", "ai-dev", "plain"} {
		if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	// A second runtime class, for the pod that names its own.
	if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia-cdi"}, Handler: "nvidia-cdi"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("seed Plex pod gets exactly the seed's volumes, mounts and runtime class", func(t *testing.T) {
		rec := &demo.WarningRecorder{}
		wc, err := demo.ClientWithWarnings(env.Cluster.Config, rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wc.CoreV1().Pods("media").Create(ctx, seed.PlexPod(), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating Plex: %v", err)
		}
		got, err = cs.CoreV1().Pods("media").Get(ctx, got.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got.Spec.Volumes, seedVolumes) {
			t.Errorf("volumes = %+v, want the seed's %+v", got.Spec.Volumes, seedVolumes)
		}
		if !equality.Semantic.DeepEqual(got.Spec.Containers[0].VolumeMounts, seedMounts) {
			t.Errorf("mounts = %+v, want the seed's %+v", got.Spec.Containers[0].VolumeMounts, seedMounts)
		}
		if got.Spec.RuntimeClassName == nil || *got.Spec.RuntimeClassName != "nvidia" {
			t.Errorf("runtimeClassName = %v, want nvidia", got.Spec.RuntimeClassName)
		}
		if !equality.Semantic.DeepEqual(got.Spec.Containers[0].Env, seed.PlexPod().Spec.Containers[0].Env) {
			t.Errorf("env changed: %+v", got.Spec.Containers[0].Env)
		}
		if len(rec.Warnings) == 0 {
			t.Error("no warning told the user what was injected")
		}
	})

	t.Run("unannotated pod is untouched", func(t *testing.T) {
		in := plainPod("plain", "web")
		got, err := cs.CoreV1().Pods("plain").Create(ctx, in, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Volumes) != 0 || got.Spec.RuntimeClassName != nil || len(got.Spec.Containers[0].VolumeMounts) != 0 {
			t.Errorf("unannotated pod was changed: volumes %v runtimeClass %v", got.Spec.Volumes, got.Spec.RuntimeClassName)
		}
	})

	t.Run("explicit runtime class is kept", func(t *testing.T) {
		in := seed.PlexPod()
		in.Name = "plex-cdi"
		in.Spec.RuntimeClassName = ptr.To("nvidia-cdi")
		got, err := cs.CoreV1().Pods("media").Create(ctx, in, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.RuntimeClassName == nil || *got.Spec.RuntimeClassName != "nvidia-cdi" {
			t.Errorf("runtimeClassName = %v, want the pod's own nvidia-cdi", got.Spec.RuntimeClassName)
		}
		if len(got.Spec.Volumes) != 3 {
			t.Errorf("devices not injected: %v", got.Spec.Volumes)
		}
	})

	t.Run("hybrid vLLM pod gets its shares and is scheduled by them", func(t *testing.T) {
		in := plainPod("ai-dev", "vllm")
		in.Annotations = map[string]string{workload.AnnotationProfiles: "nvidia", workload.AnnotationShares: "2"}
		in.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelabai"}
		got, err := cs.CoreV1().Pods("ai-dev").Create(ctx, in, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		two := resource.MustParse("2")
		c := got.Spec.Containers[0]
		if q := c.Resources.Limits[workload.SharedResource]; q.Cmp(two) != 0 {
			t.Errorf("limit = %v, want 2", c.Resources.Limits)
		}
		if q := c.Resources.Requests[workload.SharedResource]; q.Cmp(two) != 0 {
			t.Errorf("request = %v, want 2", c.Resources.Requests)
		}
		bound, err := demo.WaitBound(ctx, cs, "ai-dev", "vllm")
		if err != nil {
			t.Fatal(err)
		}
		if bound.Spec.NodeName != "homelabai" {
			t.Errorf("scheduled to %q, want homelabai", bound.Spec.NodeName)
		}
	})

	t.Run("shares alone get the nvidia runtime class and keep the device plugin's GPU", func(t *testing.T) {
		in := plainPod("ai-dev", "ollama")
		in.Annotations = map[string]string{workload.AnnotationShares: "1"}
		got, err := cs.CoreV1().Pods("ai-dev").Create(ctx, in, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		// K3s's default runtime is runc: without nvidia the share buys no GPU.
		if got.Spec.RuntimeClassName == nil || *got.Spec.RuntimeClassName != "nvidia" {
			t.Errorf("runtimeClassName = %v, want nvidia", got.Spec.RuntimeClassName)
		}
		for _, e := range got.Spec.Containers[0].Env {
			if e.Name == "NVIDIA_VISIBLE_DEVICES" {
				t.Errorf("env %s=%s would override the GPU the device plugin allocates", e.Name, e.Value)
			}
		}
	})

	t.Run("device profiles where Pod Security forbids hostPath are denied with the fix", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ai-baseline", Labels: map[string]string{workload.LabelPodSecurityEnforce: "baseline"}}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		in := seed.PlexPod()
		in.Namespace = ns.Name
		_, err := cs.CoreV1().Pods(ns.Name).Create(ctx, in, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		// Without gpuslice's answer, Pod Security refuses the injected
		// hostPath volumes, naming volumes the user never wrote.
		if err == nil || !strings.Contains(err.Error(), "gpuslice:") || !strings.Contains(err.Error(), "pod-security.kubernetes.io/enforce=privileged") {
			t.Fatalf("err = %v, want gpuslice's denial saying how to label the namespace", err)
		}
		shares := plainPod(ns.Name, "ollama")
		shares.Annotations = map[string]string{workload.AnnotationShares: "1"}
		got, err := cs.CoreV1().Pods(ns.Name).Create(ctx, shares, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("shares alone need no hostPath, yet: %v", err)
		}
		if q := got.Spec.Containers[0].Resources.Limits[workload.SharedResource]; q.Value() != 1 {
			t.Errorf("shares pod in a baseline namespace not mutated: %v", got.Spec.Containers[0].Resources)
		}
	})

	t.Run("unknown profile is denied listing the known ones", func(t *testing.T) {
		in := plainPod("media", "typo")
		in.Annotations = map[string]string{workload.AnnotationProfiles: "nvidai"}
		_, err := cs.CoreV1().Pods("media").Create(ctx, in, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "nvidai") || !strings.Contains(err.Error(), "nvidia") {
			t.Fatalf("err = %v, want a denial naming nvidai and the known profile nvidia", err)
		}
	})

	t.Run("dry run is mutated and stores nothing", func(t *testing.T) {
		in := seed.PlexPod()
		in.Name = "plex-dry"
		got, err := cs.CoreV1().Pods("media").Create(ctx, in, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Volumes) != 3 {
			t.Errorf("dry-run answer lacks the devices: %v", got.Spec.Volumes)
		}
		if _, err := cs.CoreV1().Pods("media").Get(ctx, "plex-dry", metav1.GetOptions{}); err == nil {
			t.Error("dry run stored the pod")
		}
	})
}

// TestWebhookOutage: with the webhook down, failurePolicy Fail refuses GPU
// pods, and the match conditions keep every other pod, and kube-system,
// away from it.
func TestWebhookOutage(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	for _, ns := range []string{"media", "plain"} {
		if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.StopWebhook(); err != nil {
		t.Fatalf("stopping the webhook: %v", err)
	}
	_, err := cs.CoreV1().Pods("media").Create(ctx, seed.PlexPod(), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("annotated pod with the webhook down: err = %v, want the failure-policy error", err)
	}
	if _, err := cs.CoreV1().Pods("plain").Create(ctx, plainPod("plain", "web"), metav1.CreateOptions{}); err != nil {
		t.Errorf("unannotated pod refused during the outage: %v", err)
	}
	sys := seed.PlexPod()
	sys.Namespace = "kube-system"
	if _, err := cs.CoreV1().Pods("kube-system").Create(ctx, sys, metav1.CreateOptions{}); err != nil {
		t.Errorf("kube-system pod refused during the outage: %v", err)
	}
}

// TestCertificateRotation rotates the serving certificate again and again
// while pods are being created; not one creation may fail, and fresh
// connections must see the new certificate.
func TestCertificateRotation(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, "media"); err != nil {
		t.Fatal(err)
	}
	// Rotations are paced by creations, not by the clock: one after every
	// sixth pod, so each lands in the middle of the stream.
	const creators, perCreator, rotations = 4, 15, 10
	var wg sync.WaitGroup
	errs := make(chan error, creators*perCreator)
	created := make(chan struct{}, creators*perCreator)
	for w := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perCreator {
				p := seed.PlexPod()
				p.Name = fmt.Sprintf("plex-%d-%d", w, i)
				if _, err := cs.CoreV1().Pods("media").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("pod %s: %w", p.Name, err)
				}
				created <- struct{}{}
			}
		}()
	}
	var serials []string
	for n := 1; n <= creators*perCreator; n++ {
		<-created
		if n%(creators*perCreator/rotations) == 0 {
			if err := env.IssueWebhookCert(time.Hour); err != nil {
				t.Fatal(err)
			}
			serials = append(serials, servedSerial(t, env.WebhookURL, env.CA.Certificate()))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, s := range serials {
		seen[s] = true
	}
	if len(seen) != rotations {
		t.Errorf("fresh connections saw %d distinct certificates over %d rotations", len(seen), rotations)
	}
	pods, err := cs.CoreV1().Pods("media").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if len(p.Spec.Volumes) != 3 {
			t.Errorf("pod %s was not mutated: %v", p.Name, p.Spec.Volumes)
		}
	}
	if len(pods.Items) != creators*perCreator {
		t.Errorf("%d pods stored, want %d", len(pods.Items), creators*perCreator)
	}
}

// servedSerial makes a fresh TLS connection to the webhook, verifying it
// against the CA, and returns the serial of the certificate it serves.
func servedSerial(t *testing.T, webhookURL string, ca *x509.Certificate) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	host := strings.TrimSuffix(strings.TrimPrefix(webhookURL, "https://"), "/mutate")
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with the webhook: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func plainPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "busybox"}}},
	}
}
