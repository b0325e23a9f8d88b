// Package agent is the node agent, `gpuslice agent`: run as a DaemonSet
// on GPU nodes, it reads every GPU and its processes through NVML, maps
// each process to its pod and container through /proc/PID/cgroup and the
// API server, and serves the result as Prometheus metrics gathered on
// scrape, with /healthz and /readyz.
//
// Without NVML (no driver library in the pod, no GPU) it keeps serving:
// /healthz stays ok, /readyz answers 503 with the reason and the fix,
// gpuslice_agent_nvml_available is 0, and NVML is retried with backoff.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/internal/serving"
	"github.com/gpuslice/gpuslice/pkg/gpu"
)

// DefaultPort is where the agent listens; gpuslice top scrapes it through
// the API server's pods proxy.
const DefaultPort = 9400

// Options configure the agent.
type Options struct {
	// NodeName is the node the agent runs on (the downward API's
	// spec.nodeName): only its pods are watched.
	NodeName      string
	ListenAddress string
	// ProcRoot is the host's /proc: with hostPID: true, /proc itself.
	ProcRoot string
	// NVML is the library to read; nil means the real one, from
	// NVMLLibrary (empty: libnvidia-ml.so.1 from the loader's path).
	NVML        gpu.NVML
	NVMLLibrary string
	// Pods lists and watches the node's pods: NodePods, from the
	// kubeconfig or the pod's in-cluster configuration.
	Pods cache.ListerWatcher
	Log  *slog.Logger
	// RetryMin and RetryMax bound the NVML initialisation backoff
	// (defaults 5s and 5m).
	RetryMin, RetryMax time.Duration
	// ShutdownGrace is how long scrapes in flight get on stop (default 5s).
	ShutdownGrace time.Duration
}

// Agent is a configured node agent.
type Agent struct {
	opts     Options
	nvml     *NVMLSession
	pods     *PodInformer
	registry *prometheus.Registry

	started  atomic.Bool
	draining atomic.Bool
}

// New checks the options and builds the agent; nothing runs until Start
// or Serve.
func New(o Options) (*Agent, error) {
	switch {
	case o.NodeName == "":
		return nil, errors.New("agent: Options.NodeName is empty: the agent watches only its node's pods")
	case o.Pods == nil:
		return nil, errors.New("agent: Options.Pods is nil: the agent needs the API server to name pods")
	case o.Log == nil:
		return nil, errors.New("agent: no logger")
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.NVML == nil {
		o.NVML = gpu.NewNVML(o.NVMLLibrary)
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 5 * time.Second
	}
	pods, err := NewPodInformer(o.Pods, o.NodeName, o.Log)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		opts:     o,
		nvml:     NewNVMLSession(o.NVML, o.Log, o.RetryMin, o.RetryMax),
		pods:     pods,
		registry: serving.NewRegistry(),
	}
	a.registry.MustRegister(
		NewExporter(ExporterOptions{Node: o.NodeName, GPUs: a.nvml, Pods: pods, ProcRoot: o.ProcRoot, Log: o.Log}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return a, nil
}

// Registry holds the agent's metrics and the Go runtime's.
func (a *Agent) Registry() *prometheus.Registry { return a.registry }

// Start initialises NVML (once, synchronously) and starts the pod watch
// and the NVML retry loop, all stopped by ctx.
func (a *Agent) Start(ctx context.Context) {
	if a.started.Swap(true) {
		return
	}
	a.nvml.Start(ctx)
	a.pods.Start(ctx)
}

// Readiness says whether the agent can attribute GPU memory, and if not,
// why; the same text /readyz answers.
func (a *Agent) Readiness() (bool, string) {
	switch {
	case a.draining.Load():
		return false, "shutting down"
	case !a.started.Load():
		return false, "not started"
	case !a.pods.Synced():
		msg := "pods on node " + a.opts.NodeName + " not listed from the API server yet"
		if last := a.pods.LastError(); last != "" {
			msg += ": " + last + "; grant the agent list and watch on pods (docs/agent.md)"
		}
		return false, msg
	}
	if up, reason := a.nvml.Status(); !up {
		return false, reason.Error()
	}
	return true, "ok"
}

// Handler serves /metrics, /healthz (ok while the process serves) and
// /readyz (503 with the reason while NVML or the pod list is missing).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	serving.Endpoints(mux, a.registry, a.Readiness, a.opts.Log)
	return mux
}

// Serve starts the agent and serves HTTP on ln until ctx ends, then lets
// scrapes in flight finish.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.Start(ctx)
	up, reason := a.nvml.Status()
	attrs := []any{"address", ln.Addr().String(), "node", a.opts.NodeName, "procRoot", a.opts.ProcRoot, "nvmlAvailable", up}
	if !up {
		attrs = append(attrs, "reason", reason.Reason)
	}
	a.opts.Log.Info("agent serving", attrs...)
	err := serving.Run(ctx, "agent", a.opts.ShutdownGrace, func() { a.draining.Store(true) },
		serving.Listener{Server: serving.NewServer(a.Handler(), a.opts.Log), Listener: ln})
	a.opts.Log.Info("agent stopped")
	return err
}
