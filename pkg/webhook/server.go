package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gpuslice/gpuslice/internal/serving"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/registration"
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
	// DrainDelay is how long a stopping server keeps answering before it
	// closes its connections. The API server keeps HTTP/1.1 connections to
	// a replica open across a rollout (kube-proxy moves only new ones), and
	// does not retry a POST on a connection closed under it: during the
	// delay every answer says "Connection: close", so the API server closes
	// each connection itself after its next request and dials the Service
	// anew. Zero closes at once.
	DrainDelay time.Duration
	// Timeouts bound slow clients; zero fields are serving's defaults.
	Timeouts serving.Timeouts
	// TLS is the protocol floor and cipher suites; zero is the defaults.
	TLS TLSOptions

	ready    atomic.Bool
	draining atomic.Bool
}

// mux returns the routes served on both listeners (/mutate only on TLS).
func (s *Server) mux(withMutate bool) *http.ServeMux {
	mux := http.NewServeMux()
	if withMutate {
		mutate := s.closingWhileDraining(s.Handler)
		mux.Handle(registration.MutatePath, mutate)
		mux.Handle(registration.HostPathForbiddenPath, mutate)
	}
	serving.Endpoints(mux, s.Metrics.Registry, s.readiness, s.Log)
	return mux
}

// closingWhileDraining has the client close its connection after each
// answer once the server is stopping (see DrainDelay).
func (s *Server) closingWhileDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// Ready is what /readyz answers: whether the replica should receive
// admissions, and if not, why.
func (s *Server) Ready() (bool, string) { return s.readiness() }

// readiness is what /readyz answers.
func (s *Server) readiness() (bool, string) {
	gateOK, gateWhy := s.Handler.gateReady()
	configOK, configWhy := s.Handler.configReady()
	switch {
	case s.draining.Load():
		return false, "shutting down"
	case !s.ready.Load():
		return false, "not serving yet"
	case !gateOK:
		return false, gateWhy
	case !configOK:
		return false, configWhy
	case time.Now().After(s.Certs.NotAfter()):
		return false, fmt.Sprintf("serving certificate expired at %s: renew it (cert-manager, or restart with --self-signed)", s.Certs.NotAfter().Format(time.RFC3339))
	}
	return true, "ok"
}

// Serve serves TLS on ln (and plain HTTP on metricsLn when not nil) until
// ctx ends, then drains: /readyz fails at once, answers ask clients to
// close their connections for DrainDelay, and then requests in flight get
// ShutdownGrace to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener, metricsLn net.Listener) error {
	t := s.TLS.orDefault()
	tlsConfig := &tls.Config{
		MinVersion:     t.MinVersion,
		CipherSuites:   t.CipherSuites,
		GetCertificate: s.Certs.GetCertificate,
	}
	main := serving.NewServerWith(s.mux(true), s.Log, s.Timeouts)
	main.TLSConfig = tlsConfig
	listeners := []serving.Listener{{Server: main, Listener: tls.NewListener(ln, tlsConfig)}}
	if metricsLn != nil {
		listeners = append(listeners, serving.Listener{Server: serving.NewServerWith(s.mux(false), s.Log, s.Timeouts), Listener: metricsLn})
	}
	grace := s.ShutdownGrace
	if grace == 0 {
		grace = 10 * time.Second
	}
	s.ready.Store(true)
	s.Log.Info("webhook serving", "address", ln.Addr().String(), "metricsAddress", addrOf(metricsLn), "certificateExpires", s.Certs.NotAfter().Format(time.RFC3339))
	err := serving.Run(ctx, "webhook", grace, func() {
		s.draining.Store(true)
		if s.DrainDelay > 0 {
			s.Log.Info("webhook draining: answering with Connection: close before closing connections", "delay", s.DrainDelay.String())
			// A grace period, not synchronisation: nothing tells the server
			// when the API server has moved every connection away.
			time.Sleep(s.DrainDelay)
		}
	}, listeners...)
	s.Log.Info("webhook stopped")
	return err
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
