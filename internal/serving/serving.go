// Package serving is what every long-running gpuslice command serves besides
// its own work: /healthz, /readyz and /metrics, and the loop that serves
// until the context ends and then drains requests in flight.
package serving

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"time"

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

// NewServer is an http.Server with the timeouts and error log every
// gpuslice server uses.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog(log)}
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
