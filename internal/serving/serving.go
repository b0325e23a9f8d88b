// Package serving is what every long-running gpuslice command serves besides
// its own work: /healthz, /readyz and /metrics, and the loop that serves
// until the context ends and then drains requests in flight.
package serving

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gpuslice/gpuslice/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc says whether the process is ready, and if not, why: the body of
// a 503 from /readyz.
type ReadyFunc func() (ok bool, reason string)

// Endpoints adds /healthz (ok while the process serves), /readyz (from
// ready) and /metrics (reg) to mux.
func Endpoints(mux *http.ServeMux, reg *prometheus.Registry, ready ReadyFunc, log *slog.Logger) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, reason := ready(); !ok {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: errorLog(log)}))
}

// Listener pairs a server with the listener it serves.
type Listener struct {
	Server   *http.Server
	Listener net.Listener
}

// Timeouts bound how long one connection may hold a server: a client that
// trickles its request or parks an idle keep-alive connection must not pin
// a goroutine and a file descriptor for ever.
type Timeouts struct {
	ReadHeader time.Duration // request line and headers
	Read       time.Duration // the whole request, body included
	Write      time.Duration // from the end of the headers to the end of the response
	Idle       time.Duration // a keep-alive connection between requests
}

// DefaultTimeouts suit every gpuslice endpoint: the API server gives a
// webhook call at most 30 s, a scrape or probe takes milliseconds, and 90 s
// idle matches the keep-alive of Go's and the API server's transports (and
// controller-runtime's servers).
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 90 * time.Second}

// orDefault fills the zero fields from DefaultTimeouts.
func (t Timeouts) orDefault() Timeouts {
	d := DefaultTimeouts
	return Timeouts{
		ReadHeader: cmp.Or(t.ReadHeader, d.ReadHeader), Read: cmp.Or(t.Read, d.Read),
		Write: cmp.Or(t.Write, d.Write), Idle: cmp.Or(t.Idle, d.Idle),
	}
}

// maxHeaderBytes is controller-runtime's bound too; no gpuslice client
// sends more than a few hundred bytes of headers.
const maxHeaderBytes = 1 << 20

// NewServer is an http.Server with DefaultTimeouts and the error log every
// gpuslice server uses.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return NewServerWith(h, log, DefaultTimeouts)
}

// NewServerWith is NewServer with timeouts t (zero fields default).
func NewServerWith(h http.Handler, log *slog.Logger, t Timeouts) *http.Server {
	t = t.orDefault()
	return &http.Server{
		Handler: h, ErrorLog: errorLog(log), MaxHeaderBytes: maxHeaderBytes,
		ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle,
	}
}

// Run serves every listener until ctx ends or one of them fails. Then it
// calls draining (so /readyz fails at once) and gives requests in flight
// grace to finish. name says whose server it is, in errors.
func Run(ctx context.Context, name string, grace time.Duration, draining func(), ls ...Listener) error {
	errs := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errs <- l.Server.Serve(l.Listener) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("%s server stopped: %w", name, err)
	}
	draining()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, l := range ls {
		if serr := l.Server.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("draining %s server: %w", name, serr)
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// errorLog routes net/http's own complaints into log (slog's default when
// nil) as warnings.
func errorLog(log *slog.Logger) *stdlog.Logger {
	if log == nil {
		log = slog.Default()
	}
	return slog.NewLogLogger(log.Handler(), slog.LevelWarn)
}

// NewRegistry is the metrics registry every gpuslice server starts from:
// it holds gpuslice_build_info, 1 with the build's version, revision and
// Go version as labels, as Prometheus exporters publish theirs, so a
// dashboard can tell which build each replica runs.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	info := version.Get()
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "gpuslice_build_info",
		Help:        "Always 1; the labels say which gpuslice build this process runs.",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Commit, "goversion": info.GoVersion},
	}, func() float64 { return 1 }))
	return r
}
