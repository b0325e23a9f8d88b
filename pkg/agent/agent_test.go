package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/internal/standin/proctest"
	"github.com/gpuslice/gpuslice/internal/testutil/podsource"
	"github.com/gpuslice/gpuslice/pkg/gpu"
)

const (
	node        = "homelabai"
	mib         = uint64(1) << 20
	uidVLLM     = "0b7e2c55-0c1f-4d7a-9f57-2b8e4a6c1d90"
	uidTTS      = "6a4d9e21-3b5c-4f8e-a1d2-7c9b0e3f5a68"
	uidPlex     = "c1f0a9b8-7e6d-4c5b-8a4f-3e2d1c0b9a87"
	uidStatic   = "5d41402abc4b2a76b9719d911017c592" // a static pod's config hash
	uidGone     = "deadbeef-0000-4000-8000-000000000000"
	pidGone     = 52001 // in a pod the API server no longer lists
	pidNoProc   = 52002 // no /proc entry
	pidStatic   = 52003
	pidNoStatus = 52004 // container ID not in the pod's status yet
)

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func pod(ns, name, uid, container, containerID string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: container}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if containerID != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: container, ContainerID: "containerd://" + containerID}}
	}
	return p
}

// homelab is the recorded RTX 3080 Ti plus the edge cases, with pods and a
// proc root to match.
func homelab(t *testing.T) (*gpu.Fake, cache.ListerWatcher, string) {
	t.Helper()
	f := gpu.RecordedRTX3080Ti()
	f.Devices[0].Compute = append(f.Devices[0].Compute,
		gpu.ProcessInfo{Pid: pidGone, UsedGpuMemory: 256 * mib},
		gpu.ProcessInfo{Pid: pidNoProc, UsedGpuMemory: 64 * mib},
		gpu.ProcessInfo{Pid: pidStatic, UsedGpuMemory: 32 * mib},
		gpu.ProcessInfo{Pid: pidNoStatus, UsedGpuMemory: 16 * mib},
	)
	static := pod("kube-system", "gpu-probe-homelabai", "a-different-api-uid-0000000000000000", "probe", "")
	static.Annotations = map[string]string{annotationMirror: uidStatic}
	cs := podsource.Fixed(
		pod("ai-dev", "vllm-server-6d9f7c8b5d-x2x9q", uidVLLM, "vllm", proctest.ContainerID(1)),
		pod("ai", "tts-5c8b7d9f6-k4m2p", uidTTS, "tts", proctest.ContainerID(2)),
		pod("media", "plex-7f9d8c6b5-q7w8e", uidPlex, "plex", proctest.ContainerID(3)),
		static,
	)
	proc := t.TempDir()
	for pid, content := range map[uint32]string{
		gpu.RecordedPIDVLLM: proctest.Container(uidVLLM, proctest.ContainerID(1)),
		gpu.RecordedPIDTTS:  "0::/kubepods/burstable/pod" + uidTTS + "/" + proctest.ContainerID(2) + "\n", // cgroupfs, K3s's default
		gpu.RecordedPIDPlex: proctest.Container(uidPlex, proctest.ContainerID(3)),
		gpu.RecordedPIDXorg: proctest.Host("display-manager.service"),
		pidGone:             proctest.Container(uidGone, proctest.ContainerID(4)),
		pidStatic:           "0::/kubepods/burstable/pod" + uidStatic + "/" + proctest.ContainerID(5) + "\n",
		pidNoStatus:         proctest.Container(uidPlex, proctest.ContainerID(6)),
	} {
		if err := proctest.Write(proc, pid, content); err != nil {
			t.Fatal(err)
		}
	}
	return f, cs, proc
}

func startAgent(t *testing.T, o Options) (*Agent, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o.NodeName = node
	o.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a.Start(ctx)
	return a, logs
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// scrapeMetrics fetches /metrics and parses it with Prometheus's text parser.
func scrapeMetrics(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, body)
	}
	return families
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mf := families[name]
	if mf == nil {
		return 0, false
	}
	var found []float64
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		found = append(found, m.GetGauge().GetValue())
	}
	if len(found) != 1 {
		if len(found) > 1 {
			t.Errorf("%s%v matches %d samples", name, want, len(found))
		}
		return 0, false
	}
	return found[0], true
}

func expect(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(t, families, name, labels)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestAgentExpositionRecordedGPU(t *testing.T) {
	f, cs, proc := homelab(t)
	a, logs := startAgent(t, Options{NVML: f, Pods: cs, ProcRoot: proc})
	poll(t, "readiness", func() bool { ok, _ := a.Readiness(); return ok })
	if code, body := get(t, a.Handler(), "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}

	fams := scrapeMetrics(t, a.Handler())
	gpu0 := map[string]string{"gpu": "0", "uuid": gpu.RecordedUUID, "model": gpu.RecordedModel, "node": node}
	expect(t, fams, MetricGPUMemoryTotal, gpu0, float64(12288*mib))
	expect(t, fams, MetricGPUMemoryUsed, gpu0, float64((4+1180+1126+8586+243)*mib))
	expect(t, fams, MetricGPUMemoryFree, gpu0, float64((12288-4-1180-1126-8586-243)*mib))
	expect(t, fams, MetricGPUUtilization, gpu0, 0.37)
	expect(t, fams, MetricGPUTemperature, gpu0, 61)
	expect(t, fams, MetricNVMLAvailable, map[string]string{"node": node}, 1)

	podMem := func(ns, pod, container string, want uint64) {
		t.Helper()
		expect(t, fams, MetricPodGPUMemory, map[string]string{"namespace": ns, "pod": pod, "container": container, "gpu": "0", "node": node}, float64(want))
	}
	podMem("ai-dev", "vllm-server-6d9f7c8b5d-x2x9q", "vllm", gpu.RecordedVLLMBytes)
	podMem("ai", "tts-5c8b7d9f6-k4m2p", "tts", gpu.RecordedTTSBytes)
	// Plex is in both the compute and the graphics list: counted once.
	podMem("media", "plex-7f9d8c6b5-q7w8e", "plex", gpu.RecordedPlexBytes)
	// A container whose ID is not in the status yet still counts for its pod.
	podMem("media", "plex-7f9d8c6b5-q7w8e", "", 16*mib)
	podMem("kube-system", "gpu-probe-homelabai", "", 32*mib)

	unattributed := func(reason string, want uint64) {
		t.Helper()
		expect(t, fams, MetricUnattributedMemory, map[string]string{"gpu": "0", "reason": reason, "node": node}, float64(want))
	}
	unattributed(ReasonHostProcess, gpu.RecordedXorgBytes)
	unattributed(ReasonUnknownPod, 256*mib)
	unattributed(ReasonPIDNotFound, 64*mib)
	unattributed(ReasonProcUnreadable, 0)

	// Nothing is dropped: pods and unattributed add up to the processes.
	var sum float64
	for _, name := range []string{MetricPodGPUMemory, MetricUnattributedMemory} {
		for _, m := range fams[name].GetMetric() {
			sum += m.GetGauge().GetValue()
		}
	}
	if want := float64(gpu.RecordedVLLMBytes + gpu.RecordedTTSBytes + gpu.RecordedPlexBytes + gpu.RecordedXorgBytes + (256+64+32+16)*mib); sum != want {
		t.Errorf("attributed + unattributed = %v, want every process's %v", sum, want)
	}
	for _, c := range []string{"gpu", "pods"} {
		expect(t, fams, MetricCollectorSuccess, map[string]string{"collector": c}, 1)
		if _, ok := value(t, fams, MetricCollectorDuration, map[string]string{"collector": c}); !ok {
			t.Errorf("no duration for collector %s", c)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("Go runtime and process metrics missing")
	}
	if n := strings.Count(logs.String(), "has no entry under --proc-root"); n != 1 {
		t.Errorf("pid-not-found hint logged %d times, want once:\n%s", n, logs)
	}
	// Scraping again does not repeat it.
	scrapeMetrics(t, a.Handler())
	if n := strings.Count(logs.String(), "has no entry under --proc-root"); n != 1 {
		t.Errorf("pid-not-found hint logged %d times after two scrapes, want once", n)
	}
}

// TestAgentMetricsLint runs Prometheus's own linter over the agent's metrics.
func TestAgentMetricsLint(t *testing.T) {
	f, cs, proc := homelab(t)
	a, _ := startAgent(t, Options{NVML: f, Pods: cs, ProcRoot: proc})
	poll(t, "readiness", func() bool { ok, _ := a.Readiness(); return ok })
	problems, err := testutil.GatherAndLint(a.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	exporter := NewExporter(ExporterOptions{Node: node, GPUs: a.nvml, Pods: a.pods, ProcRoot: proc, Log: a.opts.Log})
	if problems, err := testutil.CollectAndLint(exporter); err != nil || len(problems) > 0 {
		t.Errorf("CollectAndLint: %v %v", problems, err)
	}
}

// countingNVML counts Init calls on the real library.
type countingNVML struct {
	gpu.NVML
	mu    sync.Mutex
	inits int
}

func (c *countingNVML) Init() error {
	c.mu.Lock()
	c.inits++
	c.mu.Unlock()
	return c.NVML.Init()
}

func (c *countingNVML) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inits
}

// TestAgentDegradedWithoutNVML runs the real NVML binding on this machine, which has
// no NVIDIA driver: the agent must say why once, keep serving, report 0,
// fail /readyz with the fix, and keep retrying.
func TestAgentDegradedWithoutNVML(t *testing.T) {
	probe := gpu.NewNVML("").Init()
	if probe == nil {
		t.Skip("this machine has NVML; the degraded path needs one without")
	}
	why := gpu.AsUnavailable(probe) // on Linux with cgo: libnvidia-ml.so.1 not found
	_, cs, proc := homelab(t)
	lib := &countingNVML{NVML: gpu.NewNVML("")}
	logs := &logBuffer{}
	a, err := New(Options{
		NodeName: node, Pods: cs, ProcRoot: proc, NVML: lib,
		Log:      slog.New(slog.NewJSONHandler(logs, nil)),
		RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	httpGet := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll(t, "the pod list", a.pods.Synced)
	poll(t, "several NVML retries", func() bool { return lib.count() >= 5 })

	if code, body := httpGet("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s, want 200: the process is fine", code, body)
	}
	code, body := httpGet("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, why.Reason) || !strings.Contains(body, why.Fix) {
		t.Errorf("/readyz: %d %q, want 503 with %q and %q", code, body, why.Reason, why.Fix)
	}
	fams := scrapeMetrics(t, a.Handler())
	expect(t, fams, MetricNVMLAvailable, map[string]string{"node": node}, 0)
	expect(t, fams, MetricCollectorSuccess, map[string]string{"collector": "gpu"}, 0)
	expect(t, fams, MetricCollectorSuccess, map[string]string{"collector": "pods"}, 1)
	if fams[MetricGPUMemoryTotal] != nil || fams[MetricPodGPUMemory] != nil {
		t.Error("GPU metrics without NVML")
	}
	if n := strings.Count(logs.String(), `"msg":"NVML unavailable`); n != 1 {
		t.Errorf("NVML unavailable logged %d times after %d attempts, want once:\n%s", n, lib.count(), logs)
	}
	reason, _ := json.Marshal(why.Reason)
	fix, _ := json.Marshal(why.Fix)
	for _, want := range []string{`"level":"ERROR"`, `"reason":` + string(reason), `"fix":` + string(fix)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestAgentNVMLComesLate: the driver is not there at first (the container
// started before the driver loaded), then is; the agent picks it up
// without a restart.
func TestAgentNVMLComesLate(t *testing.T) {
	f, cs, proc := homelab(t)
	f.InitErrors = []error{gpu.ERROR_DRIVER_NOT_LOADED, gpu.ERROR_DRIVER_NOT_LOADED, gpu.ERROR_DRIVER_NOT_LOADED}
	a, logs := startAgent(t, Options{NVML: f, Pods: cs, ProcRoot: proc, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	// Start made the first attempt already.
	if up, reason := a.nvml.Status(); up || !strings.Contains(reason.Error(), "ERROR_DRIVER_NOT_LOADED") || !strings.Contains(reason.Error(), "load the NVIDIA kernel driver") {
		t.Errorf("before the driver: up %v, %v", up, reason)
	}
	poll(t, "NVML to come up", func() bool { up, _ := a.nvml.Status(); return up })
	poll(t, "readiness", func() bool { ok, _ := a.Readiness(); return ok })
	if f.InitCount() != 4 {
		t.Errorf("%d Init calls, want 4", f.InitCount())
	}
	if n := strings.Count(logs.String(), `"msg":"NVML unavailable`); n != 1 {
		t.Errorf("the same reason logged %d times, want once", n)
	}
	if !strings.Contains(logs.String(), `"msg":"NVML available","driverVersion":"550.120","gpus":1`) {
		t.Errorf("no recovery line:\n%s", logs)
	}
}

// TestAgentNVMLLost: the GPU falls off the bus mid-run. The scrape that sees it
// reports NVML unavailable; the session is initialised again.
func TestAgentNVMLLost(t *testing.T) {
	f, cs, proc := homelab(t)
	a, logs := startAgent(t, Options{NVML: f, Pods: cs, ProcRoot: proc, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	poll(t, "readiness", func() bool { ok, _ := a.Readiness(); return ok })
	f.Update(func(f *gpu.Fake) { f.ReadErr = gpu.ERROR_GPU_IS_LOST })
	fams := scrapeMetrics(t, a.Handler())
	expect(t, fams, MetricNVMLAvailable, map[string]string{"node": node}, 0)
	expect(t, fams, MetricCollectorSuccess, map[string]string{"collector": "gpu"}, 0)
	if !strings.Contains(logs.String(), "NVML session lost") {
		t.Errorf("no log of the loss:\n%s", logs)
	}
	f.Update(func(f *gpu.Fake) { f.ReadErr = nil })
	poll(t, "NVML to be initialised again", func() bool { return f.InitCount() >= 2 })
	poll(t, "readiness", func() bool { ok, _ := a.Readiness(); return ok })
	fams = scrapeMetrics(t, a.Handler())
	expect(t, fams, MetricNVMLAvailable, map[string]string{"node": node}, 1)
}

func TestAgentNewRejectsMissingOptions(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(Options{Pods: podsource.Fixed(), Log: log}); err == nil || !strings.Contains(err.Error(), "NodeName") {
		t.Errorf("no node name: %v", err)
	}
	if _, err := New(Options{NodeName: node, Log: log}); err == nil || !strings.Contains(err.Error(), "Pods") {
		t.Errorf("no client: %v", err)
	}
}
