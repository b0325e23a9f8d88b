package webhook

import (
	"time"

	"github.com/gpuslice/gpuslice/internal/serving"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the webhook's Prometheus metrics, on a registry of its own so
// tests and several servers in one process never collide.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	mutations     *prometheus.CounterVec
	denials       *prometheus.CounterVec
	badRequests   *prometheus.CounterVec
	certExpiry    prometheus.Gauge
	certReloads   *prometheus.CounterVec
	configReloads *prometheus.CounterVec
	gateDecisions *prometheus.CounterVec
	// gateJournalWrites counts writes of the gate's journal, by result.
	gateJournalWrites *prometheus.CounterVec
}

// NewMetrics registers the webhook's metrics and the Go runtime's.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: serving.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_admission_requests_total",
			Help: "Admission requests answered, by outcome: mutated, unchanged, denied or rejected (HTTP 4xx).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gpuslice_webhook_admission_duration_seconds",
			Help:    "Time to answer an admission request, from the request body read to the response written.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
		}, []string{"outcome"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_mutations_total",
			Help: "Pods mutated, by device profile (or \"gpu-shares\" for hybrid share requests).",
		}, []string{"profile"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_denials_total",
			Help: "Pods denied, by reason.",
		}, []string{"reason"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_bad_requests_total",
			Help: "Requests refused before admission with an HTTP 4xx status, by reason.",
		}, []string{"reason"}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpuslice_webhook_certificate_expiry_timestamp_seconds",
			Help: "Expiry of the serving certificate in use, as a Unix time.",
		}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_certificate_reloads_total",
			Help: "Serving certificate loads, by result (success or error).",
		}, []string{"result"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_config_reloads_total",
			Help: "Reloads of the --config file after it changed, by result (success or error).",
		}, []string{"result"}),
		gateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_gate_decisions_total",
			Help: "Pods the admission gate (--admission-gate) decided on, by decision: allowed, denied, or break_glass (admitted by the gpuslice.io/break-glass annotation).",
		}, []string{"decision"}),
		gateJournalWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_webhook_gate_journal_writes_total",
			Help: "Writes of the admission gate's journal (the record gpuslice history reads), by result: success or error (decisions kept in memory and retried).",
		}, []string{"result"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.mutations, m.denials, m.badRequests, m.certExpiry, m.certReloads, m.configReloads, m.gateDecisions, m.gateJournalWrites,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CertificateLoaded records a certificate (re)load; it fits certs.ReloadFunc.
func (m *Metrics) CertificateLoaded(notAfter time.Time, err error) {
	if err != nil {
		m.certReloads.WithLabelValues("error").Inc()
		return
	}
	m.certReloads.WithLabelValues("success").Inc()
	m.certExpiry.Set(float64(notAfter.Unix()))
}
