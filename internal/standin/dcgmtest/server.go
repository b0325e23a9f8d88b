// Package dcgmtest is a stand-in NVIDIA dcgm-exporter for tests. It serves
// /metrics as dcgm-exporter writes it (HELP and TYPE lines, its label set
// in its order, fields beside the framebuffer ones, one series per pod
// when pod mapping is on) and a minimal Prometheus /api/v1/query that
// answers instant queries for a bare DCGM metric name in the API's JSON,
// as a Prometheus scraping the exporter would.
//
// It writes both formats by hand, not with client_golang or the
// Prometheus API client, so that parsers are tested against the wire
// format rather than against the library that wrote it.
package dcgmtest

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gpuslice/gpuslice/pkg/gpu"
)

// GPU is one device an exporter reports. Memory is in MiB, as DCGM
// reports it: FB_FREE is TotalMiB - ReservedMiB - UsedMiB.
type GPU struct {
	// Node is the Kubernetes node, and the Hostname label as
	// dcgm-exporter writes it when its NODE_NAME is set. Hostname, when
	// set, is the label instead, as an exporter without NODE_NAME writes
	// its pod's name. With both "" the label is left out.
	Node, Hostname string
	Index          int
	UUID           string
	Model          string
	PCIBusID       string // "" derives one from Index

	TotalMiB, ReservedMiB, UsedMiB int64
	// Pods, when set, map the GPU to pods as dcgm-exporter does with
	// Kubernetes pod mapping: one copy of every series per pod, with
	// container, namespace and pod labels. A time-sliced GPU has several.
	Pods []Pod
}

// Pod is a container using a GPU, in pod-mapped series.
type Pod struct{ Namespace, Name, Container string }

// RTX3080Ti is the reference homelab's GPU on node as pkg/gpu's recorded
// fixture has it: 12288 MiB, 243 reserved by the driver, 10896 used by
// Xorg, TTS, Plex and vLLM.
func RTX3080Ti(node string) GPU {
	used := int64(gpu.RecordedXorgBytes+gpu.RecordedTTSBytes+gpu.RecordedPlexBytes+gpu.RecordedVLLMBytes) >> 20
	return GPU{Node: node, UUID: gpu.RecordedUUID, Model: gpu.RecordedModel, TotalMiB: 12288, ReservedMiB: 243, UsedMiB: used}
}

// FreeMiB is what DCGM_FI_DEV_FB_FREE reports for g.
func (g GPU) FreeMiB() int64 { return max(0, g.TotalMiB-g.ReservedMiB-g.UsedMiB) }

// Server is the stand-in; its methods are safe for concurrent use.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	gpus      []GPU
	omit      []string
	status    int
	nodeLabel string
	extra     []promSeries

	scrapes, queries atomic.Int64
}

// DriverVersion is the DCGM_FI_DRIVER_VERSION label.
const DriverVersion = gpu.RecordedDriverVersion

// Start runs an exporter reporting gpus on loopback; Close stops it.
func Start(gpus ...GPU) *Server {
	s := &Server{gpus: slices.Clone(gpus)}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", s.serveMetrics)
	mux.HandleFunc("/api/v1/query", s.serveQuery)
	s.Server = httptest.NewServer(mux)
	return s
}

// MetricsURL is where the exporter's text is.
func (s *Server) MetricsURL() string { return s.URL + "/metrics" }

// Set changes the memory in use on node's GPU index, as a workload
// allocating or freeing it would.
func (s *Server) Set(node string, index int, usedMiB int64) error {
	return s.update(node, index, func(g *GPU) { g.UsedMiB = usedMiB })
}

// SetPods changes the pods node's GPU index is mapped to (none: no pod
// labels).
func (s *Server) SetPods(node string, index int, pods ...Pod) error {
	return s.update(node, index, func(g *GPU) { g.Pods = slices.Clone(pods) })
}

func (s *Server) update(node string, index int, change func(*GPU)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.gpus {
		if s.gpus[i].Node == node && s.gpus[i].Index == index {
			change(&s.gpus[i])
			return nil
		}
	}
	return fmt.Errorf("dcgmtest: no GPU %d on node %q", index, node)
}

// SetGPUs replaces every GPU.
func (s *Server) SetGPUs(gpus ...GPU) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gpus = slices.Clone(gpus)
}

// Omit leaves fields (e.g. "DCGM_FI_DEV_FB_FREE") out of both endpoints,
// as an exporter whose collectors CSV lacks them; none restores them.
func (s *Server) Omit(fields ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omit = slices.Clone(fields)
}

// Fail makes both endpoints answer status (the query endpoint in the
// Prometheus API's error JSON); 0 makes them answer again.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// SetPrometheusNodeLabel adds label, holding each GPU's node, to the
// series the query endpoint returns, as a relabelling rule would
// (e.g. "kubernetes_node"); "" adds none.
func (s *Server) SetPrometheusNodeLabel(label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeLabel = label
}

// AddPrometheusSeries adds a series the query endpoint returns beside the
// exporter's: one from another job that reuses a DCGM name, or one with a
// value no GPU can have. value is written as the API writes a sample.
func (s *Server) AddPrometheusSeries(labels map[string]string, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = append(s.extra, promSeries{Metric: maps.Clone(labels), Value: [2]any{0.0, value}})
}

// Scrapes counts requests to /metrics, Queries those to /api/v1/query.
func (s *Server) Scrapes() int64 { return s.scrapes.Load() }
func (s *Server) Queries() int64 { return s.queries.Load() }

// state is a consistent copy of what a request answers from.
type state struct {
	gpus      []GPU
	omit      []string
	status    int
	nodeLabel string
	extra     []promSeries
}

func (s *Server) state() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	gpus := slices.Clone(s.gpus)
	for i := range gpus {
		gpus[i].Pods = slices.Clone(gpus[i].Pods)
	}
	return state{gpus: gpus, omit: slices.Clone(s.omit), status: s.status, nodeLabel: s.nodeLabel, extra: slices.Clone(s.extra)}
}
