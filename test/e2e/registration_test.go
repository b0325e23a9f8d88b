package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/webhook"
)

func startPlainCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := localcluster.EnsureBinaries(ctx, io.Discard); err != nil {
		t.Fatalf("control-plane binaries: %v", err)
	}
	c, err := localcluster.Start(ctx, localcluster.Options{})
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// TestSelfSignedWebhook runs `gpuslice webhook --self-signed --register`'s
// code path: it bootstraps the CA Secret, registers itself with that CA in
// the caBundle, and serves a certificate for its Service's names.
func TestSelfSignedWebhook(t *testing.T) {
	c := startPlainCluster(t)
	ctx := testContext(t)
	if err := demo.EnsureNamespace(ctx, c.Client, "gpu-system"); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	done, runErr := runSelfSigned(t, ctx, c, addr, true)

	var mwcCA []byte
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("webhook exited: %v", *runErr)
		default:
		}
		mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		mwcCA = mwc.Webhooks[0].ClientConfig.CABundle
		return len(mwcCA) > 0 && ready(addr, mwcCA), nil
	})
	if err != nil {
		t.Fatalf("webhook never became ready with a registered caBundle: %v", err)
	}
	secret, err := c.Client.CoreV1().Secrets("gpu-system").Get(ctx, "gpu-webhook-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CA Secret: %v", err)
	}
	if secret.Type != corev1.SecretTypeTLS || string(secret.Data["tls.crt"]) != string(mwcCA) {
		t.Errorf("caBundle is not the Secret's CA")
	}
	mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wh := mwc.Webhooks[0]
	if *wh.FailurePolicy != "Fail" || *wh.SideEffects != "None" || *wh.ReinvocationPolicy != "IfNeeded" || *wh.TimeoutSeconds > 10 {
		t.Errorf("registration policy: failure %s sideEffects %s reinvocation %s timeout %d", *wh.FailurePolicy, *wh.SideEffects, *wh.ReinvocationPolicy, *wh.TimeoutSeconds)
	}
	if wh.ClientConfig.Service == nil || wh.ClientConfig.Service.Name != "gpu-webhook" || wh.ClientConfig.Service.Namespace != "gpu-system" {
		t.Errorf("clientConfig = %+v, want Service gpu-system/gpu-webhook", wh.ClientConfig)
	}
	// The certificate must verify for the name the API server dials.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mwcCA)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "gpu-webhook.gpu-system.svc"})
	if err != nil {
		t.Fatalf("handshake as gpu-webhook.gpu-system.svc: %v", err)
	}
	conn.Close()

	// A second replica bootstraps nothing new: same CA.
	ca, err := registration.BootstrapCA(ctx, c.Client, "gpu-system", "gpu-webhook-ca")
	if err != nil {
		t.Fatal(err)
	}
	if string(ca.CertPEM) != string(mwcCA) {
		t.Error("second bootstrap made another CA")
	}
}

// TestCABundleRotation: a new CA is added to the bundle, the old one kept;
// re-applying a registration without a caBundle keeps the one there.
func TestCABundleRotation(t *testing.T) {
	c := startPlainCluster(t)
	ctx := testContext(t)
	oldCA, err := certs.NewCA("old", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := certs.NewCA("new", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mwc := registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system", CABundle: oldCA.CertPEM})
	if err := registration.Apply(ctx, c.Client, mwc); err != nil {
		t.Fatal(err)
	}
	if err := registration.Apply(ctx, c.Client, registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system"})); err != nil {
		t.Fatal(err)
	}
	if err := registration.EnsureCABundle(ctx, c.Client, registration.DefaultName, newCA.CertPEM); err != nil {
		t.Fatal(err)
	}
	got, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle := got.Webhooks[0].ClientConfig.CABundle
	for name, ca := range map[string]*certs.CA{"old": oldCA, "new": newCA} {
		if !strings.Contains(string(bundle), strings.TrimSpace(string(ca.CertPEM))) {
			t.Errorf("caBundle lost the %s CA", name)
		}
	}

	t.Run("a CA in its last year is renewed, an expired one leaves the bundle", func(t *testing.T) {
		if err := demo.EnsureNamespace(ctx, c.Client, "gpu-system"); err != nil {
			t.Fatal(err)
		}
		// A CA with a month left, as the Secret holds it after three years.
		aging, err := certs.NewCA("gpuslice webhook CA", 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gpu-webhook-ca", Namespace: "gpu-system"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: aging.CertPEM, corev1.TLSPrivateKeyKey: aging.KeyPEM}}
		if _, err := c.Client.CoreV1().Secrets("gpu-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		renewed, err := registration.BootstrapCA(ctx, c.Client, "gpu-system", "gpu-webhook-ca")
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(renewed.Certificate().NotAfter); left < registration.CARenewBefore || left > registration.CAValidity {
			t.Errorf("the CA bootstrapped has %v left, want a new one of %v", left, registration.CAValidity)
		}
		stored, err := c.Client.CoreV1().Secrets("gpu-system").Get(ctx, "gpu-webhook-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(stored.Data[corev1.TLSCertKey]) != string(renewed.CertPEM) {
			t.Error("the Secret still holds the aging CA: other replicas would not get the new one")
		}
		again, err := registration.BootstrapCA(ctx, c.Client, "gpu-system", "gpu-webhook-ca")
		if err != nil || string(again.CertPEM) != string(renewed.CertPEM) {
			t.Errorf("the next replica got another CA (%v)", err)
		}
		// A bundle still holding an expired CA drops it when the renewed CA
		// is added.
		expired, err := certs.NewCA("expired", -time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		stale := registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system",
			CABundle: append(append([]byte{}, expired.CertPEM...), newCA.CertPEM...)})
		if err := registration.Apply(ctx, c.Client, stale); err != nil {
			t.Fatal(err)
		}
		if err := registration.EnsureCABundle(ctx, c.Client, registration.DefaultName, renewed.CertPEM); err != nil {
			t.Fatal(err)
		}
		got, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range got.Webhooks {
			b := string(w.ClientConfig.CABundle)
			if strings.Contains(b, strings.TrimSpace(string(expired.CertPEM))) {
				t.Errorf("webhook %s caBundle keeps the expired CA", w.Name)
			}
			for name, ca := range map[string]*certs.CA{"valid": newCA, "renewed": renewed} {
				if !strings.Contains(b, strings.TrimSpace(string(ca.CertPEM))) {
					t.Errorf("webhook %s caBundle lacks the %s CA", w.Name, name)
				}
			}
		}
	})
}

// TestMissingPermissions: without RBAC the errors say what to grant.
func TestMissingPermissions(t *testing.T) {
	c := startPlainCluster(t)
	ctx := testContext(t)
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:gpu-system:gpu-webhook"}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = registration.BootstrapCA(ctx, cs, "gpu-system", "gpu-webhook-ca")
	if err == nil || !strings.Contains(err.Error(), "grant get, create and update on secrets") {
		t.Errorf("BootstrapCA without RBAC: %v", err)
	}
	err = registration.EnsureCABundle(ctx, cs, registration.DefaultName, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "grant get and update on mutatingwebhookconfigurations") {
		t.Errorf("EnsureCABundle without RBAC: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ready asks /readyz over TLS, trusting only the registered caBundle.
func ready(addr string, caBundle []byte) bool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "gpu-webhook.gpu-system.svc"}}}
	resp, err := client.Get("https://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestSelfSignedBeforeRegistration: Helm creates the registration after the
// Deployment, so a self-signed webhook may start first. It must keep
// serving and write its CA once the registration appears.
func TestSelfSignedBeforeRegistration(t *testing.T) {
	c := startPlainCluster(t)
	ctx := testContext(t)
	if err := demo.EnsureNamespace(ctx, c.Client, "gpu-system"); err != nil {
		t.Fatal(err)
	}
	done, runErr := runSelfSigned(t, ctx, c, freeAddr(t), false)
	// The CA Secret exists once the webhook has started.
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("webhook exited before its registration existed: %v", *runErr)
		default:
		}
		_, err := c.Client.CoreV1().Secrets("gpu-system").Get(ctx, "gpu-webhook-ca", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := registration.Apply(ctx, c.Client, registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system"})); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
		return err == nil && len(mwc.Webhooks[0].ClientConfig.CABundle) > 0, nil
	})
	if err != nil {
		t.Fatalf("caBundle never written after the registration appeared: %v", err)
	}
}

// runSelfSigned runs `gpuslice webhook --self-signed [--register]`'s code in
// the background until the test ends. The returned channel is closed when
// it stops, early or not; errors from an early stop reach the poll loops
// through *stopErr and the end of the test through t.Errorf.
func runSelfSigned(t *testing.T, ctx context.Context, c *localcluster.Cluster, addr string, register bool) (done <-chan struct{}, stopErr *error) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan struct{})
	var err error
	go func() {
		defer close(finished)
		err = webhook.Run(runCtx, webhook.RunOptions{
			ListenAddress: addr, SelfSigned: true, Register: register,
			CASecret: "gpu-webhook-ca", ServiceName: "gpu-webhook", Namespace: "gpu-system",
			WebhookConfig: registration.DefaultName, Client: c.Client,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	t.Cleanup(func() {
		stop()
		<-finished
		if err != nil {
			t.Errorf("webhook.Run: %v", err)
		}
	})
	return finished, &err
}
