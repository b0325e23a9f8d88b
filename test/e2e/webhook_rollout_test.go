package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/webhook"
)

// TestWebhookRollingUpdate: while pods are created without pause, the
// webhook is replaced three times as a Deployment's rolling update replaces
// it (maxUnavailable 0): the new replica starts and becomes ready, the
// Service's endpoints switch to it, then the old one gets SIGTERM (its
// context ends) and drains. Not one admission may fail.
//
// The API server reaches the replicas through serviceProxy, which does
// what kube-proxy does for a ClusterIP: a new connection goes to the
// current endpoint, an established one stays with its replica until either
// side closes it. The API server's own HTTP/2 connections to the webhook
// are thereby kept across the switch, so the old replica's drain (GOAWAY,
// requests in flight finished) is what the test exercises. The preStop
// delay, which covers the time kube-proxy needs to learn of the switch, is
// not needed here: the switch is done before the old replica is stopped.
func TestWebhookRollingUpdate(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, "media"); err != nil {
		t.Fatal(err)
	}
	if err := env.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	proxy := startServiceProxy(t)
	mwc := registration.Build(registration.Options{URL: "https://" + proxy.addr() + registration.MutatePath, CABundle: env.CA.CertPEM})
	if err := registration.Apply(ctx, cs, mwc); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() *replica {
		t.Helper()
		r, err := startReplica(env.CertFile, env.KeyFile, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.stop() })
		// Ready as the kubelet's readiness probe sees it.
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return r.ready(), nil
		}); err != nil {
			t.Fatalf("replica %s never became ready: %v", r.addr, err)
		}
		return r
	}
	current := start()
	proxy.route(current.addr)

	const creators = 4
	var created atomic.Int64
	errs := make(chan error, 1000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				p := seed.PlexPod()
				p.Name = fmt.Sprintf("plex-%d-%d", i, n)
				got, err := cs.CoreV1().Pods("media").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				switch {
				case err != nil:
					errs <- fmt.Errorf("creating %s: %w", p.Name, err)
				case len(got.Spec.Volumes) != 3:
					errs <- fmt.Errorf("%s admitted without its devices: %v", p.Name, got.Spec.Volumes)
				default:
					created.Add(1)
				}
			}
		})
	}
	// Some admissions on each replica before it is replaced.
	admitted := func(r *replica, n float64) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return r.admissions() >= n, nil
		}); err != nil {
			select {
			case first := <-errs:
				t.Fatalf("replica %s admitted %v pods, want %v: %v; a creation failed: %v", r.addr, r.admissions(), n, err, first)
			default:
				t.Fatalf("replica %s admitted %v pods, want %v: %v", r.addr, r.admissions(), n, err)
			}
		}
	}
	const rollouts = 3
	for range rollouts {
		admitted(current, 20)
		next := start()
		proxy.route(next.addr)
		if err := current.stop(); err != nil {
			t.Errorf("replica %s did not drain cleanly: %v", current.addr, err)
		}
		current = next
	}
	admitted(current, 20)
	close(stop)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		if failed <= 5 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d admissions failed across %d rolling updates", failed, int64(failed)+created.Load(), rollouts)
	}
	t.Logf("%d pods admitted across %d rolling updates", created.Load(), rollouts)
}

// replica is one webhook process, as a pod of the chart's Deployment runs it.
type replica struct {
	addr    string
	metrics *webhook.Metrics
	server  *webhook.Server
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	err     error
}

func startReplica(certFile, keyFile string, log *slog.Logger) (*replica, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	metrics := webhook.NewMetrics()
	source, err := certs.NewFileSource(certFile, keyFile, metrics.CertificateLoaded)
	if err != nil {
		ln.Close()
		return nil, err
	}
	r := &replica{addr: ln.Addr().String(), metrics: metrics, done: make(chan error, 1)}
	r.server = &webhook.Server{
		Handler: webhook.NewHandler(inject.DefaultConfig(registration.DefaultNamespace), metrics, log),
		Metrics: metrics, Certs: source, Log: log, ShutdownGrace: 10 * time.Second, DrainDelay: 3 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.server.Serve(ctx, ln, nil) }()
	return r, nil
}

// ready is what /readyz answers.
func (r *replica) ready() bool {
	ok, _ := r.server.Ready()
	return ok
}

// stop is SIGTERM: the replica drains and exits.
func (r *replica) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// admissions counts the AdmissionReviews this replica answered.
func (r *replica) admissions() float64 {
	families, err := r.metrics.Registry.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == "gpuslice_webhook_admission_requests_total" {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// serviceProxy forwards TCP connections as kube-proxy does for a Service:
// each new connection to the current endpoint, established ones untouched.
type serviceProxy struct {
	ln      net.Listener
	backend atomic.Pointer[string]
}

func startServiceProxy(t *testing.T) *serviceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &serviceProxy{ln: ln}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { p.forward(c) })
		}
	}()
	return p
}

func (p *serviceProxy) addr() string { return p.ln.Addr().String() }

// route switches the Service's endpoint for new connections.
func (p *serviceProxy) route(backend string) { p.backend.Store(&backend) }

func (p *serviceProxy) forward(client net.Conn) {
	defer client.Close()
	b := p.backend.Load()
	if b == nil {
		return
	}
	server, err := net.Dial("tcp", *b)
	if err != nil {
		return // the client sees the connection refused, as with no endpoint
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Pass the close on, so each side sees the other hang up.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}
