// Command webhook benchmarks gpuslice's admission webhook (/mutate) against
// a "floor": a minimal HTTPS server that decodes the same AdmissionReview and
// answers allowed without mutating. Both run on loopback in this process and
// get the identical request, the seed's Plex pod as the API server sends it.
//
// It measures, for each server, closed-loop throughput (C keep-alive clients
// for a fixed time) and open-loop latency at a fixed rate, timed from each
// request's scheduled send time so that a slow response cannot hide the
// requests queued behind it (coordinated omission).
//
//	go run ./bench/webhook [-duration 5s] [-rate 500] [-rate-duration 10s] [-concurrency 8] [-json]
//
// The servers take turns every -slice (1s) so that other load on the
// machine hits both alike. With -cpuprofile FILE, samples are labelled by
// server and side: go tool pprof -tagfocus server=gpuslice -tagignore
// side=client FILE shows gpuslice's server side alone.
//
// It exits 1 if any response is not what the server must answer (for
// gpuslice: HTTP 200, the request's UID, allowed, with a JSON patch), 2 on a
// setup error. Missing an aim is reported, not an error.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/webhook"
)

// Aims the webhook is held to.
const (
	aimThroughputRatio = 0.80
	aimP99             = 2 * time.Millisecond
)

type options struct {
	duration     time.Duration
	warmup       time.Duration
	rate         float64
	rateDuration time.Duration
	concurrency  int
	timeout      time.Duration
	slice        time.Duration
	jsonOut      bool
	cpuProfile   string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "closed-loop throughput measurement time per server")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up per server, before its measurements")
	flag.Float64Var(&o.rate, "rate", 500, "open-loop request rate (requests/s) for the latency measurement")
	flag.DurationVar(&o.rateDuration, "rate-duration", 10*time.Second, "open-loop latency measurement time per server")
	flag.IntVar(&o.concurrency, "concurrency", 8, "closed-loop concurrent keep-alive clients")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout; a timed-out request is a failure")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of markdown")
	flag.DurationVar(&o.slice, "slice", time.Second, "the servers take turns every slice of each measurement, so background load hits both alike; 0 measures each in one piece")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurements to this file; samples carry labels server=gpuslice|floor and side=server|client (go tool pprof -tagfocus)")
	flag.Parse()
	if flag.NArg() > 0 || o.duration <= 0 || o.warmup < 0 || o.rate <= 0 || o.rateDuration <= 0 || o.concurrency < 1 || o.timeout <= 0 || o.slice < 0 {
		fmt.Fprintln(os.Stderr, "usage: webhook [-duration D>0] [-warmup D] [-rate R>0] [-rate-duration D>0] [-concurrency C>=1] [-slice D] [-timeout D] [-json] [-cpuprofile FILE]")
		os.Exit(2)
	}
	rep, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook bench:", err)
		os.Exit(2)
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			log.Fatal(err)
		}
	} else {
		rep.printMarkdown(os.Stdout)
	}
	if rep.Failures > 0 {
		os.Exit(1)
	}
}

// report is the -json output; the markdown is printed from it too.
type report struct {
	GoVersion    string          `json:"goVersion"`
	GOMAXPROCS   int             `json:"gomaxprocs"`
	NumCPU       int             `json:"numCPU"`
	CPUModel     string          `json:"cpuModel"`
	RequestBytes int             `json:"requestBytes"`
	Concurrency  int             `json:"concurrency"`
	Duration     string          `json:"duration"`
	Warmup       string          `json:"warmup"`
	Rate         float64         `json:"rate"`
	RateDuration string          `json:"rateDuration"`
	Slice        string          `json:"slice"`
	Servers      []*serverResult `json:"servers"`
	// ThroughputRatio is gpuslice's closed-loop req/s over the floor's.
	ThroughputRatio float64 `json:"throughputRatio"`
	AimThroughput   bool    `json:"aimThroughputMet"`
	AimP99          bool    `json:"aimP99Met"`
	Failures        int64   `json:"failures"`
}

type serverResult struct {
	Name          string  `json:"name"`
	Protocol      string  `json:"protocol"`
	ResponseBytes int     `json:"responseBytes"`
	Requests      int64   `json:"closedLoopRequests"`
	ReqPerSec     float64 `json:"closedLoopReqPerSec"`
	// Open loop: latency from the scheduled send time (what a caller at
	// this rate sees), service time from the actual send (what the server
	// and transport took), and how late the generator sent (its own slop,
	// which the latency includes).
	OpenRequests int       `json:"openLoopRequests"`
	AchievedRate float64   `json:"openLoopAchievedRate"`
	Latency      quantiles `json:"latency"`
	Service      quantiles `json:"serviceTime"`
	SendLag      quantiles `json:"sendLag"`
	Failures     int64     `json:"failures"`
	FirstFailure string    `json:"firstFailure,omitempty"`
	// CPU used during the measured phases, in cores: by this process, and
	// by everything else on the machine, which competes with the run.
	SelfCores float64 `json:"selfCores"`
	// CPUPerRequest is this process's CPU time (client, server, runtime)
	// per closed-loop request, in µs: less sensitive than req/s to other
	// load on the machine.
	CPUPerRequest float64 `json:"cpuPerRequestUs"`
	OtherCores    float64 `json:"otherCores"`
	failureRecord sync.Once
}

// quantiles are in microseconds in JSON, to keep the numbers readable.
type quantiles struct {
	P50 time.Duration `json:"-"`
	P90 time.Duration `json:"-"`
	P99 time.Duration `json:"-"`
	Max time.Duration `json:"-"`
}

func (q quantiles) MarshalJSON() ([]byte, error) {
	us := func(d time.Duration) float64 { return math.Round(float64(d)/1e1) / 1e2 }
	return json.Marshal(map[string]float64{"p50us": us(q.P50), "p90us": us(q.P90), "p99us": us(q.P99), "maxus": us(q.Max)})
}

func quantilesOf(ds []time.Duration) quantiles {
	if len(ds) == 0 {
		return quantiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return benchstat.Percentile(s, q) }
	return quantiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[len(s)-1]}
}

func (r *serverResult) fail(format string, args ...any) {
	atomic.AddInt64(&r.Failures, 1)
	r.failureRecord.Do(func() { r.FirstFailure = fmt.Sprintf(format, args...) })
}

// target is one server under test, with its results so far.
type target struct {
	name string
	url  string
	// wantPatch: gpuslice must mutate the Plex pod; the floor never does.
	wantPatch bool
	stop      func() error // idempotent
	res       *serverResult
	elapsed   time.Duration // closed-loop time measured
	cpu       cpuUse        // all measured slices
	closedCPU cpuUse        // closed-loop slices only
}

// as runs f with profiler labels naming this server and the side (client
// or server); goroutines started in f inherit them.
func (t *target) as(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("server", t.name, "side", side), func(context.Context) { f() })
}

// turnOrder alternates which server goes first in slice i.
func turnOrder(i int) []int {
	if i%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}

// splitDuration yields d in pieces of slice (the last one shorter), or d
// whole when slice is 0.
func splitDuration(d, slice time.Duration) iter.Seq[time.Duration] {
	return func(yield func(time.Duration) bool) {
		for d > 0 {
			piece := d
			if slice > 0 && slice < d {
				piece = slice
			}
			if !yield(piece) {
				return
			}
			d -= piece
		}
	}
}

func run(o options) (*report, error) {
	rep := &report{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), CPUModel: benchstat.CPUModel(),
		Concurrency: o.concurrency, Duration: o.duration.String(), Warmup: o.warmup.String(),
		Rate: o.rate, RateDuration: o.rateDuration.String(), Slice: o.slice.String(),
	}
	dir, err := os.MkdirTemp("", "gpuslice-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// One CA and one P-256 leaf for 127.0.0.1 serve both servers, so the
	// TLS work per connection is the same kind on both.
	ca, err := certs.NewCA("gpuslice bench CA", time.Hour)
	if err != nil {
		return nil, err
	}
	pair, err := ca.Issue(certs.LeafOptions{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, ValidFor: time.Hour})
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := pair.WriteFiles(certFile, keyFile); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)

	tmpl, err := newRequestTemplate()
	if err != nil {
		return nil, err
	}
	rep.RequestBytes = len(tmpl.body)

	// One transport for everything: keep-alive, verified TLS, and idle
	// connections enough for the closed loop and the open loop's bursts.
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true, // use HTTP/2 if a server offers it
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: o.timeout}

	gs, err := startGpuslice(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	defer func() { _ = gs.stop() }() // on an early return; a no-op after the stop below
	fl, err := startFloor(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fl.stop() }()
	targets := []*target{gs, fl}
	for _, t := range targets {
		rep.Servers = append(rep.Servers, t.res)
		if err := preflight(client, tmpl, t); err != nil {
			return nil, err
		}
		// Warm-up: connections, TLS sessions, heap and caches; its
		// responses are checked too.
		t.as("client", func() { closedLoop(client, tmpl, t, o.concurrency, o.warmup) })
	}
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return nil, err
	}
	// The servers take turns, slice by slice, the first one alternating, so
	// that load from elsewhere on the machine and drift (heap growth, CPU
	// frequency) fall on both alike.
	var opens [2]openSamples
	for i, d := range slices.Collect(splitDuration(o.duration, o.slice)) {
		for _, k := range turnOrder(i) {
			t := targets[k]
			before := sampleCPU()
			var n int64
			var elapsed time.Duration
			t.as("client", func() { n, elapsed = closedLoop(client, tmpl, t, o.concurrency, d) })
			u := sampleCPU().since(before)
			t.cpu.add(u)
			t.closedCPU.add(u)
			t.res.Requests += n
			t.elapsed += elapsed
		}
	}
	for i, d := range slices.Collect(splitDuration(o.rateDuration, o.slice)) {
		for _, k := range turnOrder(i) {
			t := targets[k]
			before := sampleCPU()
			t.as("client", func() { opens[k].add(openLoop(client, tmpl, t, o.rate, d)) })
			t.cpu.add(sampleCPU().since(before))
		}
	}
	if err := stopProfile(); err != nil {
		return nil, err
	}
	for k, t := range targets {
		res := t.res
		res.ReqPerSec = float64(res.Requests) / t.elapsed.Seconds()
		opens[k].summarize(res)
		res.SelfCores, res.OtherCores = t.cpu.cores()
		if res.Requests > 0 {
			res.CPUPerRequest = math.Round(t.closedCPU.self / float64(res.Requests) * 1e6)
		}
		rep.Failures += res.Failures
	}
	tr.CloseIdleConnections()
	for _, t := range targets {
		if err := t.stop(); err != nil {
			return nil, fmt.Errorf("stopping %s: %w", t.name, err)
		}
	}
	if floor := rep.Servers[1].ReqPerSec; floor > 0 {
		rep.ThroughputRatio = rep.Servers[0].ReqPerSec / floor
	}
	rep.AimThroughput = rep.ThroughputRatio >= aimThroughputRatio
	rep.AimP99 = rep.Servers[0].OpenRequests > 0 && rep.Servers[0].Latency.P99 < aimP99
	return rep, nil
}

func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// startGpuslice runs the real webhook.Server as `gpuslice webhook` does with
// certificate files: default configuration, its own metrics, and the
// production JSON log handler at info level writing to io.Discard, so log
// formatting is counted but the write is not.
func startGpuslice(certFile, keyFile string) (*target, error) {
	metrics := webhook.NewMetrics()
	source, err := certs.NewFileSource(certFile, keyFile, metrics.CertificateLoaded)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := &webhook.Server{
		Handler: webhook.NewHandler(inject.DefaultConfig("gpu-system"), metrics, logger),
		Metrics: metrics, Certs: source, Log: logger, ShutdownGrace: 2 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t := &target{
		name: "gpuslice", url: "https://" + ln.Addr().String() + "/mutate", wantPatch: true,
		stop: sync.OnceValue(func() error { cancel(); return <-done }),
		res:  &serverResult{Name: "gpuslice"},
	}
	t.as("server", func() { go func() { done <- srv.Serve(ctx, ln, nil) }() })
	return t, nil
}

// startFloor runs the least an AdmissionReview server can do, set up like
// webhook.Server (TLS 1.2+, TLS config on the server and a tls.NewListener,
// which also keeps both on the same HTTP version): read the body, decode
// the review, answer allowed with the same UID.
func startFloor(certFile, keyFile string) (*target, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", floorHandler)
	srv := &http.Server{
		Handler: mux, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	t := &target{
		name: "floor", url: "https://" + ln.Addr().String() + "/mutate",
		res: &serverResult{Name: "floor"},
		stop: sync.OnceValue(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := srv.Shutdown(ctx)
			if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
				err = serr
			}
			return err
		}),
	}
	t.as("server", func() { go func() { done <- srv.Serve(tls.NewListener(ln, tlsConfig)) }() })
	return t, nil
}

func floorHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.DefaultMaxBodyBytes))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: review.TypeMeta,
		Response: &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true},
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// requestTemplate is the encoded AdmissionReview with a fixed-width
// placeholder UID that each request overwrites, so every request has its own
// UID (as from the API server) and a mixed-up response is caught.
type requestTemplate struct {
	body   []byte
	uidAt  int
	serial atomic.Uint64
	pod    []byte // the object, to apply gpuslice's patch to
}

const uidPlaceholder = "00000000-0000-4000-8000-000000000000"

func newRequestTemplate() (*requestTemplate, error) {
	pod := apiServerForm(seed.PlexPod())
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	dryRun := false
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podResource := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:  uidPlaceholder,
			Kind: podKind, Resource: podResource,
			RequestKind: &podKind, RequestResource: &podResource,
			Name: pod.Name, Namespace: pod.Namespace,
			Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{
				Username: "kubernetes-admin",
				Groups:   []string{"kubeadm:cluster-admins", "system:authenticated"},
			},
			Object:  k8sruntime.RawExtension{Raw: raw},
			DryRun:  &dryRun,
			Options: k8sruntime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply","fieldValidation":"Strict"}`)},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(body, []byte(uidPlaceholder))
	if at < 0 || bytes.Count(body, []byte(uidPlaceholder)) != 1 {
		return nil, errors.New("request template: UID placeholder not found exactly once")
	}
	return &requestTemplate{body: body, uidAt: at, pod: raw}, nil
}

// next returns a fresh request body and its UID.
func (t *requestTemplate) next() ([]byte, string) {
	body := slices.Clone(t.body)
	uid := fmt.Sprintf("%s%012d", uidPlaceholder[:24], t.serial.Add(1)%1e12)
	copy(body[t.uidAt:], uid)
	return body, uid
}

// apiServerForm fills in what the API server has set by the time mutating
// webhooks run on a `kubectl apply` of the Plex pod: field defaults, the
// ServiceAccount admission plugin's token volume and mounts, and
// DefaultTolerationSeconds' tolerations. managedFields are left out, so a
// real request is somewhat larger still.
func apiServerForm(pod *corev1.Pod) *corev1.Pod {
	s := &pod.Spec
	grace, prio, toleration := int64(30), int32(0), int64(300)
	links, preempt, mode, expiry := true, corev1.PreemptLowerPriority, int32(0o644), int64(3607)
	s.RestartPolicy, s.DNSPolicy, s.SchedulerName = corev1.RestartPolicyAlways, corev1.DNSClusterFirst, corev1.DefaultSchedulerName
	s.TerminationGracePeriodSeconds, s.Priority, s.EnableServiceLinks, s.PreemptionPolicy = &grace, &prio, &links, &preempt
	s.SecurityContext = &corev1.PodSecurityContext{}
	s.ServiceAccountName, s.DeprecatedServiceAccount = "default", "default"
	for _, key := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} {
		s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &toleration})
	}
	const token = "kube-api-access-x7k2p"
	s.Volumes = append(s.Volumes, corev1.Volume{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &expiry}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}})
	for i := range s.Containers {
		c := &s.Containers[i]
		c.TerminationMessagePath, c.TerminationMessagePolicy = corev1.TerminationMessagePathDefault, corev1.TerminationMessageReadFile
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
			if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
				c.ImagePullPolicy = corev1.PullAlways
			}
		}
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: token, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
	}
	return pod
}

// reviewOut is the part of a response the hot path checks; decoding only it
// keeps the client's share of the 2 cores small and alike for both servers.
type reviewOut struct {
	Response *struct {
		UID       string `json:"uid"`
		Allowed   bool   `json:"allowed"`
		PatchType string `json:"patchType"`
		Patch     []byte `json:"patch"`
	} `json:"response"`
}

// do sends one request and checks the answer; it reports whether the answer
// was right and when the request was actually handed to the transport.
func do(client *http.Client, tmpl *requestTemplate, t *target) (ok bool, sent time.Time) {
	res := t.res
	body, uid := tmpl.next()
	req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		res.fail("%v", err)
		return false, time.Now()
	}
	req.Header.Set("Content-Type", "application/json")
	sent = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.fail("%v", err)
		return false, sent
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		res.fail("reading response: %v", err)
		return false, sent
	case resp.StatusCode != http.StatusOK:
		res.fail("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
		return false, sent
	}
	var out reviewOut
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		res.fail("response is not an AdmissionReview (%v): %.200s", err, data)
		return false, sent
	}
	r := out.Response
	switch {
	case r.UID != uid:
		res.fail("response UID %q for request UID %q", r.UID, uid)
	case !r.Allowed:
		res.fail("not allowed: %.300s", data)
	case t.wantPatch && (r.PatchType != string(admissionv1.PatchTypeJSONPatch) || len(r.Patch) == 0):
		res.fail("allowed without a JSON patch: %.300s", data)
	default:
		return true, sent
	}
	return false, sent
}

// preflight checks one full response before any timing: the protocol, and
// for gpuslice that its patch applies to the pod and adds the nvidia
// devices and runtime class.
func preflight(client *http.Client, tmpl *requestTemplate, t *target) error {
	res := t.res
	body, uid := tmpl.next()
	req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// The server may still be starting; the listener queues the connection.
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	res.Protocol, res.ResponseBytes = resp.Proto, len(data)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		return fmt.Errorf("%s: HTTP %d, not an AdmissionReview: %.300s", t.name, resp.StatusCode, data)
	}
	if string(out.Response.UID) != uid || !out.Response.Allowed {
		return fmt.Errorf("%s: want allowed with UID %s, got %.300s", t.name, uid, data)
	}
	if !t.wantPatch {
		return nil
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		return fmt.Errorf("%s: patch does not decode: %w", t.name, err)
	}
	patched, err := patch.Apply(tmpl.pod)
	if err != nil {
		return fmt.Errorf("%s: patch does not apply: %w", t.name, err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		return err
	}
	mounted := map[string]bool{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounted[m.MountPath] = true
	}
	for _, dev := range []string{"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"} {
		if !mounted[dev] {
			return fmt.Errorf("%s: patched pod does not mount %s", t.name, dev)
		}
	}
	if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != "nvidia" {
		return fmt.Errorf("%s: patched pod has no runtimeClassName nvidia", t.name)
	}
	return nil
}

// closedLoop runs c clients back to back for d and returns the requests
// completed and the time from start until the last one finished.
func closedLoop(client *http.Client, tmpl *requestTemplate, t *target, c int, d time.Duration) (int64, time.Duration) {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range c {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if ok, _ := do(client, tmpl, t); ok {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return n.Load(), time.Since(start)
}

// openSamples accumulate the open loop's timings over slices.
type openSamples struct {
	n                     int
	elapsed               time.Duration
	latency, service, lag []time.Duration
}

func (a *openSamples) add(b openSamples) {
	a.n += b.n
	a.elapsed += b.elapsed
	a.latency = append(a.latency, b.latency...)
	a.service = append(a.service, b.service...)
	a.lag = append(a.lag, b.lag...)
}

func (a *openSamples) summarize(res *serverResult) {
	res.OpenRequests = a.n
	if a.elapsed > 0 {
		res.AchievedRate = float64(a.n) / a.elapsed.Seconds()
	}
	res.Latency, res.Service, res.SendLag = quantilesOf(a.latency), quantilesOf(a.service), quantilesOf(a.lag)
}

// openLoop sends rate requests a second for d on a fixed schedule, each in
// its own goroutine whatever the earlier ones are doing, and times each
// from its scheduled send time. The number of requests is fixed up front;
// failed ones are counted as failures, not timed as fast answers.
func openLoop(client *http.Client, tmpl *requestTemplate, t *target, rate float64, d time.Duration) openSamples {
	n := int(math.Round(rate * d.Seconds()))
	latency := make([]time.Duration, n)
	service := make([]time.Duration, n)
	lag := make([]time.Duration, n)
	okAll := make([]bool, n)
	var wg sync.WaitGroup
	start := time.Now().Add(time.Millisecond)
	for i := range n {
		at := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		sleepUntil(at)
		wg.Go(func() {
			ok, sent := do(client, tmpl, t)
			done := time.Now()
			latency[i], service[i], lag[i], okAll[i] = done.Sub(at), done.Sub(sent), sent.Sub(at), ok
		})
		// Let the request start now on this P, rather than wait behind
		// the pacer's next sleep for another P to pick it up.
		runtime.Gosched()
	}
	wg.Wait()
	// The slice's length is its schedule, not the last answer's time, so
	// that a slow tail lowers the achieved rate.
	out := openSamples{n: n, elapsed: max(d, time.Since(start))}
	for i := range n {
		if okAll[i] {
			out.latency = append(out.latency, latency[i])
			out.service = append(out.service, service[i])
			out.lag = append(out.lag, lag[i])
		}
	}
	return out
}

// pacerSpin is how long before a send time the pacer stops sleeping and
// spins; nanosleep wakes up to about 150 µs late.
const pacerSpin = 150 * time.Microsecond

// sleepUntil returns at the time given, to within microseconds. time.Sleep
// will not do: on Linux it wakes up to 1 ms late (the runtime's netpoller
// waits in whole milliseconds), half the latency budget under test, and
// that lateness would be timed as the server's. So it sleeps in the kernel
// (nanosleep, high-resolution timers) until shortly before, then spins,
// yielding to other goroutines; the spin costs about 5% of a core at 500
// req/s.
func sleepUntil(at time.Time) {
	for {
		d := time.Until(at) - pacerSpin
		if d <= 0 {
			break
		}
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: go round again
	}
	for time.Now().Before(at) {
		runtime.Gosched()
	}
}

// cpuUse sums CPU seconds and wall time over the slices of a server.
type cpuUse struct{ self, other, wall float64 }

func (c *cpuUse) add(u cpuUse) {
	c.self, c.other, c.wall = c.self+u.self, c.other+u.other, c.wall+u.wall
}

// cores returns the average cores used by this process and by the rest of
// the machine.
func (c *cpuUse) cores() (self, other float64) {
	if c.wall == 0 {
		return 0, 0
	}
	return math.Round(c.self/c.wall*100) / 100, math.Round(c.other/c.wall*100) / 100
}

// cpuSample is the machine's busy CPU time (from /proc/stat, steal
// included: time the hypervisor gave to others) and this process's.
type cpuSample struct {
	at         time.Time
	busy, self time.Duration
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, f := range fields[1:min(len(fields), 9)] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		var ticks int64
		if _, err := fmt.Sscan(f, &ticks); err == nil {
			s.busy += time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
		}
	}
	return s
}

// since returns the CPU seconds used by this process and by the rest of
// the machine between before and s.
func (s cpuSample) since(before cpuSample) cpuUse {
	self := (s.self - before.self).Seconds()
	other := max(0, (s.busy-before.busy).Seconds()-self)
	return cpuUse{self: self, other: other, wall: s.at.Sub(before.at).Seconds()}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (r *report) printMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%s, GOMAXPROCS=%d, %d CPUs: %s\n", r.GoVersion, r.GOMAXPROCS, r.NumCPU, r.CPUModel)
	fmt.Fprintf(w, "request: AdmissionReview v1 CREATE pods media/plex, %d bytes; closed loop: %d clients for %s after %s warm-up; open loop: %g req/s for %s; servers alternate every %s\n\n",
		r.RequestBytes, r.Concurrency, r.Duration, r.Warmup, r.Rate, r.RateDuration, r.Slice)
	fmt.Fprintf(w, "| server | protocol | req/s (C=%d) | ratio | p50 | p90 | p99 | max (at %g req/s) | CPU µs/req |\n", r.Concurrency, r.Rate)
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	floor := r.Servers[len(r.Servers)-1].ReqPerSec
	for _, s := range r.Servers {
		ratio := 0.0
		if floor > 0 {
			ratio = s.ReqPerSec / floor
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %s | %s | %s | %s | %.0f |\n", s.Name, s.Protocol, s.ReqPerSec, ratio,
			ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max), s.CPUPerRequest)
	}
	fmt.Fprintln(w)
	for _, s := range r.Servers {
		fmt.Fprintf(w, "%s: open loop achieved %.1f req/s; service time p50 %s p99 %s; generator send lag p99 %s max %s; CPU this process %.2f cores, other processes %.2f cores; response %d bytes; %d failures",
			s.Name, s.AchievedRate, ms(s.Service.P50), ms(s.Service.P99), ms(s.SendLag.P99), ms(s.SendLag.Max), s.SelfCores, s.OtherCores, s.ResponseBytes, s.Failures)
		if s.FirstFailure != "" {
			fmt.Fprintf(w, " (first: %s)", s.FirstFailure)
		}
		fmt.Fprintln(w)
	}
	for _, s := range r.Servers {
		if s.OtherCores > 0.1 {
			fmt.Fprintf(w, "\nWARNING: other processes used %.2f cores while %s was measured; its numbers understate it\n", s.OtherCores, s.Name)
		}
	}
	fmt.Fprintf(w, "\naim: throughput ≥ %.0f%% of floor: %s (%.2f); p99 < %s at %g req/s: %s (%s)\n",
		aimThroughputRatio*100, yesNo(r.AimThroughput), r.ThroughputRatio, ms(aimP99), r.Rate, yesNo(r.AimP99), ms(r.Servers[0].Latency.P99))
}
