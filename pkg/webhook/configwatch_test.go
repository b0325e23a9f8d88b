package webhook

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/filestamp"
	"github.com/gpuslice/gpuslice/pkg/inject"
)

const qsvProfile = `apiVersion: gpuslice.io/v1alpha1
kind: InjectorConfig
profiles:
  - name: intel-qsv
    devices: [{name: dri, hostPath: /dev/dri, type: Directory}]
`

// writeConfig replaces the file as a ConfigMap volume does: a new file
// renamed over the old one.
func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestConfigWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "apiVersion: gpuslice.io/v1alpha1\nkind: InjectorConfig\n")
	stamp, err := filestamp.Of(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := inject.LoadConfig(path, "gpu-system")
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler()
	h.SetConfig(cfg)
	w := &ConfigWatcher{Path: path, Namespace: "gpu-system", Every: 5 * time.Millisecond, Handler: h, Metrics: h.metrics,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, stamp) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	hasQSV := func() bool { return slices.Contains(h.config.Load().ProfileNames(), "intel-qsv") }

	writeConfig(t, path, qsvProfile)
	waitFor("the new profile", hasQSV)

	// A broken edit is counted and changes nothing: here a profile that
	// would hand pods the node's /etc.
	writeConfig(t, path, qsvProfile+"  - name: host-etc\n    devices: [{name: etc, hostPath: /etc}]\n")
	waitFor("the failed reload to be counted", func() bool {
		return testutil.ToFloat64(h.metrics.configReloads.WithLabelValues("error")) == 1
	})
	if !hasQSV() || slices.Contains(h.config.Load().ProfileNames(), "host-etc") {
		t.Error("a broken config replaced the one in force")
	}
	if got := testutil.ToFloat64(h.metrics.configReloads.WithLabelValues("success")); got != 1 {
		t.Errorf("successful reloads = %v, want 1", got)
	}
	// /readyz says what is wrong until the file loads again.
	srv := readyServer(t, h)
	rec := httptest.NewRecorder()
	srv.mux(false).ServeHTTP(rec, mustRequest(t, "/readyz"))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "config.yaml does not load") || !strings.Contains(rec.Body.String(), `"/etc" is not a device`) {
		t.Errorf("readyz after a broken edit = %d %q", rec.Code, rec.Body.String())
	}
	writeConfig(t, path, qsvProfile+"  - name: nvidia-again\n    devices: [{name: ctl, hostPath: /dev/nvidiactl}]\n")
	waitFor("the fixed file to load", func() bool { ok, _ := srv.readiness(); return ok })
}

// readyServer is a started Server around h with a valid certificate, to
// ask its readiness.
func readyServer(t *testing.T, h *Handler) *Server {
	t.Helper()
	s := &Server{Handler: h, Metrics: h.metrics, Certs: issuingSource(t)}
	s.ready.Store(true)
	return s
}
