package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpuslice/gpuslice/internal/serving"
	"github.com/gpuslice/gpuslice/internal/serving/servingtest"
	"github.com/gpuslice/gpuslice/pkg/certs"
)

// startServer serves on loopback with a fresh CA and returns a client that
// trusts it, the TLS and plain base URLs, and a stop function.
func startServer(t *testing.T) (client *http.Client, tlsURL, plainURL string, stop func() error) {
	t.Helper()
	return startServerWith(t, serving.Timeouts{})
}

func startServerWith(t *testing.T, timeouts serving.Timeouts) (client *http.Client, tlsURL, plainURL string, stop func() error) {
	t.Helper()
	ca, err := certs.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(certs.LeafOptions{CommonName: "127.0.0.1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := pair.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	src, err := certs.NewFileSource(certFile, keyFile, m.CertificateLoaded)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{Handler: newTestHandler(), Metrics: m, Certs: src, Log: log, ShutdownGrace: time.Second, Timeouts: timeouts}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, plain) }()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return client, "https://" + ln.Addr().String(), "http://" + plain.Addr().String(), stop
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	client, tlsURL, plainURL, _ := startServer(t)
	for _, base := range []string{tlsURL, plainURL} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, client, base+path); code != 200 {
				t.Errorf("%s%s = %d %s", base, path, code, body)
			}
		}
		code, body := get(t, client, base+"/metrics")
		if code != 200 {
			t.Fatalf("%s/metrics = %d", base, code)
		}
		// The exposition must parse, and carry the certificate's expiry.
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		if f := families["gpuslice_webhook_certificate_expiry_timestamp_seconds"]; f == nil || f.Metric[0].GetGauge().GetValue() < float64(time.Now().Unix()) {
			t.Errorf("certificate expiry metric missing or in the past: %v", f)
		}
	}
	if code, _ := get(t, client, plainURL+"/mutate"); code != http.StatusNotFound {
		t.Errorf("/mutate served over plain HTTP: %d", code)
	}
	resp, err := client.Post(tlsURL+"/mutate", "application/json", strings.NewReader(string(review("CREATE", podGVK(), plexPod()))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/mutate over TLS = %d", resp.StatusCode)
	}
}

// issuingSource is a certificate source with a fresh CA.
func issuingSource(t *testing.T) certs.Source {
	t.Helper()
	ca, err := certs.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := certs.NewIssuingSource(ca, certs.LeafOptions{CommonName: "x", ValidFor: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestReadyzFailsWhenNotServingOrExpired(t *testing.T) {
	s := &Server{Handler: newTestHandler(), Metrics: NewMetrics(), Certs: expiredSource{issuingSource(t)}}
	rec := httptest.NewRecorder()
	s.mux(true).ServeHTTP(rec, mustRequest(t, "/readyz"))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not serving") {
		t.Errorf("readyz before serving = %d %q", rec.Code, rec.Body.String())
	}
	s.ready.Store(true)
	rec = httptest.NewRecorder()
	s.mux(true).ServeHTTP(rec, mustRequest(t, "/readyz"))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "expired") {
		t.Errorf("readyz with an expired certificate = %d %q", rec.Code, rec.Body.String())
	}
}

type expiredSource struct{ certs.Source }

func (expiredSource) NotAfter() time.Time { return time.Now().Add(-time.Minute) }

// TestServerCutsSlowClients: a client trickling an AdmissionReview, or
// parking a keep-alive connection, is cut off on both listeners.
func TestServerCutsSlowClients(t *testing.T) {
	short := 200 * time.Millisecond
	client, tlsURL, plainURL, _ := startServerWith(t, serving.Timeouts{Read: short, Idle: short})
	tlsConfig := client.Transport.(*http.Transport).TLSClientConfig
	dialTLS := func() (net.Conn, error) {
		return tls.Dial("tcp", strings.TrimPrefix(tlsURL, "https://"), tlsConfig)
	}
	dialPlain := func() (net.Conn, error) { return net.Dial("tcp", strings.TrimPrefix(plainURL, "http://")) }
	t.Run("trickled review", func(t *testing.T) { servingtest.TrickledBodyCut(t, dialTLS, "/mutate") })
	t.Run("idle over TLS", func(t *testing.T) { servingtest.IdleClosed(t, dialTLS, "/healthz") })
	t.Run("idle over plain HTTP", func(t *testing.T) { servingtest.IdleClosed(t, dialPlain, "/healthz") })
}
