package serving

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/internal/serving/servingtest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTimeoutsCutSlowClients: the agent's and the arbiter's server (both
// NewServer) hang up on a trickled body and on an idle connection.
func TestTimeoutsCutSlowClients(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	short := 200 * time.Millisecond
	srv := NewServerWith(mux, nil, Timeouts{Read: short, Idle: short})
	if srv.WriteTimeout != DefaultTimeouts.Write || srv.ReadHeaderTimeout != DefaultTimeouts.ReadHeader {
		t.Errorf("zero timeouts not defaulted: write %v, read header %v", srv.WriteTimeout, srv.ReadHeaderTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, "test", time.Second, func() {}, Listener{Server: srv, Listener: ln}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	dial := func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
	t.Run("trickled body", func(t *testing.T) { servingtest.TrickledBodyCut(t, dial, "/echo") })
	t.Run("idle keep-alive", func(t *testing.T) { servingtest.IdleClosed(t, dial, "/healthz") })
}

func TestNewServerHasEveryTimeout(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), nil)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s is %v: a slow client could hold the server", name, d)
		}
	}
}

func TestNewRegistryPublishesBuildInfo(t *testing.T) {
	r := NewRegistry()
	problems, err := testutil.GatherAndLint(r)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	want := fmt.Sprintf(`# HELP gpuslice_build_info Always 1; the labels say which gpuslice build this process runs.
# TYPE gpuslice_build_info gauge
gpuslice_build_info{goversion=%q,revision="unknown",version="dev"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(r, strings.NewReader(want), "gpuslice_build_info"); err != nil {
		t.Error(err)
	}
}
