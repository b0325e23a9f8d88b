package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpuslice/gpuslice/pkg/certs"
)

// Server is the webhook's HTTPS server: /mutate, /healthz, /readyz and
// /metrics on one TLS listener, and optionally /metrics, /healthz and
// /readyz again on a plain HTTP listener for Prometheus and probes.
type Server struct {
	Handler *Handler
	Metrics *Metrics
	Certs   certs.Source
	Log     *slog.Logger
	// ShutdownGrace is how long in-flight requests may finish on stop.
	ShutdownGrace time.Duration

	ready    atomic.Bool
	draining atomic.Bool
}

// Mux returns the routes served on both listeners (/mutate only on TLS).
func (s *Server) mux(withMutate bool) *http.ServeMux {
	mux := http.NewServeMux()
	if withMutate {
		mux.Handle("/mutate", s.Handler)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !s.ready.Load():
			http.Error(w, "not serving yet", http.StatusServiceUnavailable)
		case time.Now().After(s.Certs.NotAfter()):
			http.Error(w, fmt.Sprintf("serving certificate expired at %s: renew it (cert-manager, or restart with --self-signed)", s.Certs.NotAfter().Format(time.RFC3339)), http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{Registry: s.Metrics.Registry}))
	return mux
}

// Serve serves TLS on ln (and plain HTTP on metricsLn when not nil) until
// ctx ends, then drains: /readyz fails at once, and requests in flight get
// ShutdownGrace to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener, metricsLn net.Listener) error {
	tlsConfig := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.Certs.GetCertificate,
	}
	servers := []*http.Server{{
		Handler:           s.mux(true),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
	}}
	listeners := []net.Listener{tls.NewListener(ln, tlsConfig)}
	if metricsLn != nil {
		servers = append(servers, &http.Server{Handler: s.mux(false), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, metricsLn)
	}
	errs := make(chan error, len(servers))
	for i := range servers {
		go func() { errs <- servers[i].Serve(listeners[i]) }()
	}
	s.ready.Store(true)
	s.Log.Info("webhook serving", "address", ln.Addr().String(), "metricsAddress", addrOf(metricsLn), "certificateExpires", s.Certs.NotAfter().Format(time.RFC3339))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("webhook server stopped: %w", err)
	}
	s.draining.Store(true)
	grace := s.ShutdownGrace
	if grace == 0 {
		grace = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("draining webhook server: %w", serr)
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.Log.Info("webhook stopped")
	return err
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
