// Command agent benchmarks the node agent's scrape: one Prometheus
// collection (Collect) plus text encoding, as /metrics does it, with 1, 8
// and 64 GPU processes on the recorded RTX 3080 Ti, each in its own pod.
// NVML is the recorded fake; /proc/PID/cgroup comes from a fake proc root
// on disk (so the reads are real file reads); the pods come from a
// fixed pod source (internal/testutil/podsource) through the agent's real
// informer.
//
// Side by side, in the same run and interleaved round by round:
//
//   - agent: the registry /metrics serves (gpuslice collectors, Go runtime
//     and process collectors).
//   - no pod mapping: the same registry without the pods collector, so
//     the difference is the cost of /proc reads and pod lookups.
//   - gpuslice only: the gpuslice collectors alone, without the Go and
//     process collectors every Go exporter carries.
//   - static gauge: a registry with one constant gauge: the floor of
//     gathering and encoding.
//
// Then the agent's resident memory, measured on the real thing: the
// gpuslice-agent binary (go build ./cmd/gpuslice-agent) runs against
// a real kube-apiserver (the local control plane of the e2e tests, started
// here) with 64 GPU pods and 40 others on its node, reading a stand-in
// libnvidia-ml.so.1 (internal/standin/nvmltest, built with gcc) through
// the real C binding. It is scraped -scrapes times over HTTP, then VmRSS and
// VmHWM are read from its /proc/PID/status.
//
//	go run ./bench/agent [-rounds 5] [-scrapes 2000] [-json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
	"github.com/gpuslice/gpuslice/internal/standin/proctest"
	"github.com/gpuslice/gpuslice/internal/testutil/podsource"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/gpu"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Aims from the issue.
const (
	aimScrape = 5 * time.Millisecond
	aimRSS    = 30 << 20
)

const (
	node      = "homelabai"
	otherPods = 40 // non-GPU pods on the node, which the informer holds too
)

type result struct {
	Variant     string  `json:"variant"`
	Processes   int     `json:"processes"`
	NsPerScrape float64 `json:"nsPerScrape"` // median over rounds
	AllocsPerOp int64   `json:"allocsPerScrape"`
	BytesPerOp  int64   `json:"bytesPerScrape"`
	OutputBytes int     `json:"outputBytes"`
}

type rss struct {
	Scrapes      int   `json:"scrapes"`
	Processes    int   `json:"processes"`
	StartRSS     int64 `json:"startRssBytes"`
	RSS          int64 `json:"rssBytes"`
	HWM          int64 `json:"hwmBytes"`
	RSSAnon      int64 `json:"rssAnonBytes"` // heap, stacks: the agent's own memory
	RSSFile      int64 `json:"rssFileBytes"` // pages of the binary and libraries, shared and reclaimable
	ScrapeBytes  int   `json:"scrapeBytes"`
	MeanScrapeNs int64 `json:"meanHttpScrapeNs"`
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds per variant; the median is reported")
	scrapes := flag.Int("scrapes", 2000, "HTTP scrapes before reading the agent's resident memory")
	jsonOut := flag.Bool("json", false, "machine-readable output")
	flag.Parse()
	results, err := benchScrapes(*rounds)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	mem, err := measureBinary(ctx, *scrapes)
	if err != nil {
		log.Fatalf("measuring the agent binary's memory: %v", err)
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"machine": benchstat.Machine(), "scrapes": results, "memory": mem}); err != nil {
			log.Fatal(err)
		}
		return
	}
	report(os.Stdout, results, mem)
}

// setup is one node with n GPU processes, each in its own pod.
type setup struct {
	nvml     *agent.NVMLSession
	pods     *agent.PodInformer
	procRoot string
	cancel   context.CancelFunc
}

func newSetup(n int, procRoot string) (*setup, error) {
	lib := gpu.RecordedRTX3080Ti()
	objs := []k8sruntime.Object{}
	var procs []gpu.ProcessInfo
	for i := range n {
		pid := uint32(100000 + i)
		uid := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		cid := proctest.ContainerID(pid)
		objs = append(objs, benchPod(fmt.Sprintf("worker-%d", i), uid, cid))
		if err := proctest.Write(procRoot, pid, proctest.Container(uid, cid)); err != nil {
			return nil, err
		}
		procs = append(procs, gpu.ProcessInfo{Pid: pid, UsedGpuMemory: 64 << 20, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF})
	}
	for i := range otherPods {
		objs = append(objs, benchPod(fmt.Sprintf("cpu-only-%d", i), fmt.Sprintf("11111111-0000-4000-8000-%012d", i), proctest.ContainerID(uint32(900000+i))))
	}
	lib.Devices[0].Compute, lib.Devices[0].Graphics = procs, nil
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	s := &setup{nvml: agent.NewNVMLSession(lib, log, 0, 0), procRoot: procRoot, cancel: cancel}
	var err error
	if s.pods, err = agent.NewPodInformer(podsource.Fixed(objs...), node, log); err != nil {
		cancel()
		return nil, err
	}
	s.nvml.Start(ctx)
	s.pods.Start(ctx)
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return s.pods.Synced(), nil
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	return s, nil
}

func benchPod(name, uid, containerID string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name, UID: types.UID(uid),
			Labels: map[string]string{"app": name}, Annotations: map[string]string{workload.AnnotationMemory: "64Mi"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "main", ContainerID: "containerd://" + containerID, Ready: true},
		}},
	}
}

func (s *setup) exporter(withPods bool) *agent.Exporter {
	o := agent.ExporterOptions{Node: node, GPUs: s.nvml, ProcRoot: s.procRoot, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if withPods {
		o.Pods = s.pods
	}
	return agent.NewExporter(o)
}

func runtimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
}

// scrape is what promhttp does per request: gather, then encode each
// family in the text format.
func scrape(g prometheus.Gatherer, w io.Writer) error {
	families, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

type variant struct {
	name      string
	processes int
	gatherer  prometheus.Gatherer
}

func benchScrapes(rounds int) ([]result, error) {
	var variants []variant
	for _, n := range []int{1, 8, 64} {
		dir, err := os.MkdirTemp("", "gpuslice-bench-proc-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		s, err := newSetup(n, dir)
		if err != nil {
			return nil, err
		}
		defer s.cancel()
		full := prometheus.NewRegistry()
		full.MustRegister(append(runtimeCollectors(), s.exporter(true))...)
		noPods := prometheus.NewRegistry()
		noPods.MustRegister(append(runtimeCollectors(), s.exporter(false))...)
		ours := prometheus.NewRegistry()
		ours.MustRegister(s.exporter(true))
		variants = append(variants,
			variant{"agent", n, full},
			variant{"no pod mapping", n, noPods},
			variant{"gpuslice only", n, ours})
	}
	static := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bench_static", Help: "A constant."})
	g.Set(1)
	static.MustRegister(g)
	variants = append(variants, variant{"static gauge", 0, static})

	samples := make([][]testing.BenchmarkResult, len(variants))
	for round := range rounds {
		order := make([]int, len(variants))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 { // alternate the order so drift hits all alike
			slices.Reverse(order)
		}
		for _, i := range order {
			v := variants[i]
			var failed error
			r := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := scrape(v.gatherer, io.Discard); err != nil {
						failed = err
						b.FailNow()
					}
				}
			})
			if failed != nil {
				return nil, fmt.Errorf("%s with %d processes: %w", v.name, v.processes, failed)
			}
			samples[i] = append(samples[i], r)
		}
	}
	out := make([]result, len(variants))
	for i, v := range variants {
		ns := make([]float64, len(samples[i]))
		for j, r := range samples[i] {
			ns[j] = float64(r.NsPerOp())
		}
		slices.Sort(ns)
		var cw countingWriter
		if err := scrape(v.gatherer, &cw); err != nil {
			return nil, err
		}
		last := samples[i][len(samples[i])-1]
		out[i] = result{Variant: v.name, Processes: v.processes, NsPerScrape: ns[len(ns)/2],
			AllocsPerOp: last.AllocsPerOp(), BytesPerOp: last.AllocedBytesPerOp(), OutputBytes: cw.n}
	}
	return out, nil
}

// measureBinary runs the real gpuslice-agent binary, as the DaemonSet
// would, against a real kube-apiserver (the local control plane) with 64
// GPU processes and their pods, and a stand-in libnvidia-ml.so.1 (the real
// C binding path); scrapes it over HTTP and reads its /proc/PID/status.
func measureBinary(ctx context.Context, scrapes int) (*rss, error) {
	const n = 64
	root, err := localcluster.FindRepoRoot(".")
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "gpuslice-bench-agent-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin, lib, procRoot := filepath.Join(work, "gpuslice-agent"), filepath.Join(work, "libnvidia-ml.so.1"), filepath.Join(work, "proc")
	for _, c := range [][]string{
		// Built as the image ships it (internal/image): stripped, trimmed
		// paths, cgo for NVML with the pure-Go resolver.
		{"go", "build", "-trimpath", "-ldflags=-s -w", "-tags=netgo,osusergo", "-o", bin, "./cmd/gpuslice-agent"},
	} {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	if err := nvmltest.Build(ctx, lib, ""); err != nil {
		return nil, err
	}
	if _, err := localcluster.EnsureBinaries(ctx, os.Stderr); err != nil {
		return nil, err
	}
	cluster, err := localcluster.Start(ctx, localcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	if _, err := cluster.AddNode(ctx, seed.HomelabAI()); err != nil {
		return nil, err
	}
	cs := cluster.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for i := range n + otherPods {
		name := fmt.Sprintf("worker-%d", i)
		if i >= n {
			name = fmt.Sprintf("cpu-only-%d", i-n)
		}
		p := benchPod(name, "", "")
		p.Status = corev1.PodStatus{}
		created, err := cs.CoreV1().Pods("bench").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		pid := uint32(100000 + i)
		cid := proctest.ContainerID(pid)
		if _, err := cluster.SetPodStatus(ctx, "bench", name, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "busybox", ContainerID: "containerd://" + cid, Ready: true}}
		}); err != nil {
			return nil, err
		}
		if i < n {
			if err := proctest.Write(procRoot, pid, proctest.Container(string(created.UID), cid)); err != nil {
				return nil, err
			}
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", cluster.Kubeconfig, "--node-name", node,
		"--listen-address", addr, "--nvml-library", lib, "--proc-root", procRoot, "--log-level", "warn")
	cmd.Env = append(os.Environ(), nvmltest.EnvProcesses+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) ([]byte, int, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, err
	}
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, code, err := get("/readyz")
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return nil, fmt.Errorf("the agent binary did not become ready: %w", err)
	}
	status := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status"
	start, err := readStatus(status)
	if err != nil {
		return nil, err
	}
	var size int
	began := time.Now()
	for range scrapes {
		b, code, err := get("/metrics")
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("scrape: HTTP %d, %v", code, err)
		}
		size = len(b)
		if !strings.Contains(string(b), `pod="worker-63"`) {
			return nil, fmt.Errorf("the agent does not attribute the processes:\n%s", b)
		}
	}
	elapsed := time.Since(began)
	end, err := readStatus(status)
	if err != nil {
		return nil, err
	}
	return &rss{Scrapes: scrapes, Processes: n, StartRSS: start["VmRSS"], RSS: end["VmRSS"], HWM: end["VmHWM"],
		RSSAnon: end["RssAnon"], RSSFile: end["RssFile"], ScrapeBytes: size, MeanScrapeNs: elapsed.Nanoseconds() / int64(max(scrapes, 1))}, nil
}

// readStatus reads the kB figures of a /proc/PID/status.
func readStatus(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64); err == nil {
			out[k] = n << 10
		}
	}
	return out, nil
}

func report(w io.Writer, results []result, mem *rss) {
	m := benchstat.Machine()
	fmt.Fprintf(w, "machine: %s, %s CPUs, GOMAXPROCS=%s, %s %s\n\n", m["cpu"], m["cpus"], m["gomaxprocs"], m["go"], m["goos/goarch"])
	fmt.Fprintf(w, "%-16s %9s %12s %10s %12s %10s\n", "scrape", "processes", "time/scrape", "allocs", "alloc bytes", "output")
	over := false
	for _, r := range results {
		d := time.Duration(r.NsPerScrape)
		fmt.Fprintf(w, "%-16s %9d %12s %10d %12d %9dB\n", r.Variant, r.Processes, d.Round(100*time.Nanosecond), r.AllocsPerOp, r.BytesPerOp, r.OutputBytes)
		over = over || (r.Variant == "agent" && d > aimScrape)
	}
	fmt.Fprintf(w, "\ngpuslice-agent (the binary) after %d HTTP scrapes, %d GPU processes, %d pods on the node:\n", mem.Scrapes, mem.Processes, mem.Processes+otherPods)
	fmt.Fprintf(w, "  VmRSS %.1f MiB = RssAnon %.1f MiB (heap, stacks) + RssFile %.1f MiB (mapped binary); ready, before scraping: %.1f MiB; VmHWM %.1f MiB\n",
		mib(mem.RSS), mib(mem.RSSAnon), mib(mem.RSSFile), mib(mem.StartRSS), mib(mem.HWM))
	fmt.Fprintf(w, "  /metrics %d bytes, %s per HTTP scrape (client in the benchmark, loopback)\n", mem.ScrapeBytes, time.Duration(mem.MeanScrapeNs).Round(time.Microsecond))
	fmt.Fprintf(w, "\naims: scrape < %s: %s; RSS < %d MiB: %s\n", aimScrape, verdict(!over), aimRSS>>20, verdict(mem.HWM < aimRSS))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
