// Command status times `gpuslice status` against the seed's kubectl
// pipelines doing the same job, on a cluster of -nodes GPU nodes and -pods
// running pods held by a real kube-apiserver (the local control plane of
// the e2e tests, started here; no kubelet: nodes and pods are written with
// the status a kubelet would give them).
//
// The seed's "Check GPU Allocation" is two pipelines:
//
//   - the allocation: `kubectl describe nodes`;
//   - the GPU pods: `kubectl get pods -A -o json`, filtered (here by jq) for
//     pods requesting an nvidia.com/ resource or annotated gpu-directories.
//
// kubectl is built from the control plane's pinned Kubernetes version
// (localcluster.BuildKubectl), gpuslice as the image ships it (-trimpath,
// -s -w). Each round runs the three commands in a rotating order, so a
// neighbour's load falls on all of them; the first round is a warm-up and
// checks every command's output. Wall time is from start to exit; peak RSS
// is the process's (for the jq pipeline, kubectl's plus jq's) maximum
// resident set, from wait4.
//
//	go run ./bench/status [-nodes 200] [-pods 10000] [-rounds 7] [-uncompressed] [-json]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// The aims.
const (
	aimMedian = 500 * time.Millisecond
	aimRatio  = 10.0
	aimRSSMiB = 150
)

// Each node's pods, by position in its group of podsPerGroup: the first
// sharePods request one share, then webhookPods are annotated only, then
// one hybrid pod (annotation and a share); the rest use no GPU.
const (
	podsPerGroup = 50
	sharePods    = 10
	webhookPods  = 2
	nodeShares   = 16 // two GPUs time-sliced 8 ways
	namespaces   = 50
	podsPerRS    = 10 // pods per Deployment's current ReplicaSet
)

func main() {
	nodes := flag.Int("nodes", 200, "GPU nodes")
	pods := flag.Int("pods", 10000, "running pods, spread evenly over the nodes")
	history := flag.Int("history", 2, "ReplicaSets kept per Deployment (the current one and old ones scaled to 0)")
	rounds := flag.Int("rounds", 7, "timed rounds (after one warm-up round)")
	asJSON := flag.Bool("json", false, "machine-readable output")
	cpuProfile := flag.String("cpuprofile", "", "after the rounds, profile snapshot.Ledger and the table in-process (10 runs) into this file")
	uncompressed := flag.Bool("uncompressed", false, "also time gpuslice status --disable-compression (the API server's gzip off), interleaved with the others")
	flag.Parse()
	log.SetFlags(0)
	if *nodes < 1 || *pods < *nodes || *rounds < 1 || *history < 1 {
		log.Fatal("error: need -nodes >= 1, -pods >= -nodes, -rounds >= 1 and -history >= 1")
	}
	if err := run(*nodes, *pods, *history, *rounds, *asJSON, *cpuProfile, *uncompressed); err != nil {
		log.Fatalf("error: %v", err)
	}
}

func run(nodes, pods, history, rounds int, asJSON bool, cpuProfile string, uncompressed bool) error {
	ctx := context.Background()
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("jq"); err != nil {
		return errors.New("the seed's pod pipeline is filtered with jq: install it (apt-get install jq)")
	}
	tmp, err := os.MkdirTemp("", "bench-status-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	gpuslice := filepath.Join(tmp, "gpuslice")
	log.Printf("building gpuslice (-trimpath -s -w) and kubectl %s...", localcluster.KubernetesVersion)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", gpuslice, "./cmd/gpuslice")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building gpuslice: %w", err)
	}
	kubectl, err := localcluster.BuildKubectl(ctx, root, os.Stderr)
	if err != nil {
		return err
	}
	if _, err := localcluster.EnsureBinaries(ctx, os.Stderr); err != nil {
		return err
	}
	cluster, err := localcluster.Start(ctx, localcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()

	start := time.Now()
	want, err := populate(ctx, cluster, nodes, pods, history)
	if err != nil {
		return err
	}
	log.Printf("cluster: %d nodes, %d running pods (%d using the GPU), %d ReplicaSets, written in %s",
		nodes, pods, want.gpuPods, want.replicaSets, time.Since(start).Round(time.Second))

	cmds := commands(gpuslice, kubectl, cluster.Kubeconfig, filepath.Join(tmp, "kubectl-cache"), nodes, want.gpuPods, uncompressed)
	if err := warmUp(cmds); err != nil {
		return err
	}
	res := result{Machine: benchstat.Machine(), Nodes: nodes, Pods: pods, GPUPods: want.gpuPods, ReplicaSets: want.replicaSets,
		Kubectl: localcluster.KubernetesVersion, Started: time.Now().UTC().Format(time.RFC3339)}
	samples := make([][]sample, len(cmds))
	res.LoadBefore = loadAverage()
	for r := range rounds {
		for i := range cmds {
			k := (r + i) % len(cmds)
			s, err := cmds[k].run(nil)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, cmds[k].name, err)
			}
			samples[k] = append(samples[k], s)
		}
	}
	res.LoadAfter = loadAverage()
	together := make([]sample, rounds)
	for r := range rounds {
		for k, c := range cmds {
			if !c.seed {
				continue
			}
			together[r].wall += samples[k][r].wall
			together[r].rssKiB = max(together[r].rssKiB, samples[k][r].rssKiB)
		}
	}
	for k, c := range cmds {
		res.Rows = append(res.Rows, summarize(c.name, samples[k]))
	}
	res.Rows = append(res.Rows, summarize("pipelines together (per round)", together))
	status, pipelines := res.Rows[0], res.Rows[len(res.Rows)-1]
	res.Ratio = pipelines.MedianS / status.MedianS
	res.Aims = map[string]bool{
		"median < 0.5 s":     status.MedianS < aimMedian.Seconds(),
		"10x the pipelines":  res.Ratio >= aimRatio,
		"peak RSS < 150 MiB": status.MaxRSSMiB < aimRSSMiB,
	}
	if cpuProfile != "" {
		if err := profile(ctx, cluster.Config, cpuProfile); err != nil {
			return err
		}
	}

	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.print(os.Stdout)
	return nil
}

// populated is what the cluster holds, for checking the commands' output.
type populated struct{ gpuPods, replicaSets int }

// populate writes the nodes, namespaces, ReplicaSets and pods in parallel.
func populate(ctx context.Context, cluster *localcluster.Cluster, nodes, pods, history int) (populated, error) {
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = 1e6, 1e6 // the API server's own limits are the only ones
	cfg.ContentType = k8sruntime.ContentTypeProtobuf
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return populated{}, err
	}
	var out populated
	err = parallel(ctx, nodes, func(i int) error {
		_, err := cluster.AddNode(ctx, seed.Node{
			Name: nodeName(i),
			Labels: map[string]string{
				"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-3080-Ti-SHARED", "nvidia.com/gpu.count": "2",
				"nvidia.com/gpu.memory": "12288", "nvidia.com/gpu.replicas": "8",
			},
			Resources: corev1.ResourceList{workload.SharedResource: *resource.NewQuantity(nodeShares, resource.DecimalSI)},
		})
		return err
	})
	if err != nil {
		return out, err
	}
	err = parallel(ctx, namespaces, func(i int) error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceName(i)}}, metav1.CreateOptions{})
		return ignoreExists(err)
	})
	if err != nil {
		return out, err
	}
	// One Deployment per podsPerRS pods (its current ReplicaSet owns them),
	// with history-1 old ReplicaSets at 0 replicas, as Deployments keep.
	deployments := (pods + podsPerRS - 1) / podsPerRS
	current := make([]*appsv1.ReplicaSet, deployments)
	out.replicaSets = deployments * history
	err = parallel(ctx, out.replicaSets, func(i int) error {
		d, rev := i/history, i%history
		rs := replicaSet(d, rev)
		got, err := cs.AppsV1().ReplicaSets(rs.Namespace).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating ReplicaSet %s/%s: %w", rs.Namespace, rs.Name, err)
		}
		if rev == 0 {
			current[d] = got
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	var gpu sync.Map
	err = parallel(ctx, pods, func(i int) error {
		pod := podFor(i, nodes, current[i/podsPerRS])
		if ledger.IsGPUPod(pod, ledger.Options{}) {
			gpu.Store(i, true)
		}
		got, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		setRunning(got)
		if _, err := cs.CoreV1().Pods(got.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting pod %s/%s running: %w", pod.Namespace, pod.Name, err)
		}
		return nil
	})
	gpu.Range(func(_, _ any) bool { out.gpuPods++; return true })
	return out, err
}

// parallel runs f(0..n-1) on 32 workers and returns the first error.
func parallel(ctx context.Context, n int, f func(int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func nodeName(i int) string      { return fmt.Sprintf("gpu-%03d", i) }
func namespaceName(i int) string { return fmt.Sprintf("team-%02d", i) }

// replicaSet is revision rev of Deployment d: the pod template a real one
// carries, so its size is what a cluster's ReplicaSets weigh.
func replicaSet(d, rev int) *appsv1.ReplicaSet {
	name := fmt.Sprintf("app-%04d", d)
	labels := map[string]string{"app": name, "pod-template-hash": fmt.Sprintf("h%04d%d", d, rev)}
	replicas := int32(0)
	if rev == 0 {
		replicas = podsPerRS
	}
	yes := true
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-" + labels["pod-template-hash"], Namespace: namespaceName(d % namespaces), Labels: labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(10 - rev), "deployment.kubernetes.io/desired-replicas": strconv.Itoa(podsPerRS)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: "00000000-0000-0000-0000-000000000000", Controller: &yes}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(name, false)},
		},
	}
}

// podSpec is an ordinary application container with its env, probes and
// volumes; gpu adds a request for one share.
func podSpec(app string, gpu bool) corev1.PodSpec {
	var env []corev1.EnvVar
	for _, k := range []string{"LOG_LEVEL", "HTTP_PORT", "CACHE_DIR", "MODEL_DIR", "TZ", "WORKERS"} {
		env = append(env, corev1.EnvVar{Name: k, Value: strings.ToLower(k) + "-value"})
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if gpu {
		one := *resource.NewQuantity(1, resource.DecimalSI)
		res.Requests[workload.SharedResource], res.Limits[workload.SharedResource] = one, one
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10}
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: app, Image: "registry.example/" + app + ":1.0", Env: env, Resources: res,
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			LivenessProbe:  probe,
			ReadinessProbe: probe,
			VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "config", MountPath: "/etc/" + app}},
		}},
		Volumes: []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}},
		},
	}
}

// podFor is pod i, bound to node i%nodes and owned by rs. Its use of the
// GPU follows its position among its node's pods (see podsPerGroup).
func podFor(i, nodes int, rs *appsv1.ReplicaSet) *corev1.Pod {
	slot := (i / nodes) % podsPerGroup
	shares := slot < sharePods || slot == sharePods+webhookPods
	annotated := slot >= sharePods && slot <= sharePods+webhookPods
	spec := podSpec(rs.OwnerReferences[0].Name, shares)
	spec.NodeName = nodeName(i % nodes)
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%05d", rs.Name, i), Namespace: rs.Namespace, Labels: rs.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}},
		},
		Spec: spec,
	}
	if annotated {
		pod.Annotations = map[string]string{workload.AnnotationProfiles: "nvidia"}
	}
	return pod
}

// setRunning gives pod the status its kubelet would.
func setRunning(pod *corev1.Pod) {
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &now
	pod.Status.PodIP, pod.Status.HostIP = "10.42.0.1", "127.0.0.1"
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	started := true
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image + "@sha256:0", ContainerID: "containerd://0", Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

// command is one timed command line: a process, or for the pod pipeline
// kubectl piped into jq.
type command struct {
	name string
	argv [][]string // one element per pipeline stage
	// seed marks the seed's pipelines, summed as "pipelines together".
	seed bool
	// check says what is wrong with the warm-up's output.
	check func(out []byte) error
}

// sample is one run: wall time, and the largest stage's peak RSS summed
// over the pipeline's stages (they are resident at once).
type sample struct {
	wall   time.Duration
	rssKiB int64
}

// gpuPodsFilter keeps, as the seed's pipeline means to, pods that request
// an nvidia.com/ resource or carry the device annotation.
var gpuPodsFilter = fmt.Sprintf(`[.items[] | select(
  ([.spec.containers[], (.spec.initContainers // [])[] | (.resources.requests // {}), (.resources.limits // {}) | keys[] | startswith("nvidia.com/")] | any)
  or (.metadata.annotations // {} | has(%q)))
  | {namespace: .metadata.namespace, name: .metadata.name, node: .spec.nodeName}]`, workload.AnnotationProfiles)

func commands(gpuslice, kubectl, kubeconfig, cacheDir string, nodes, gpuPods int, uncompressed bool) []command {
	kc := []string{kubectl, "--kubeconfig", kubeconfig, "--cache-dir", cacheDir}
	statusTable := func(out []byte) error { return expectNodes(out, nodes, "gpu-000 ") }
	cmds := []command{
		{name: "gpuslice status", argv: [][]string{{gpuslice, "status", "--kubeconfig", kubeconfig}}, check: statusTable},
		{name: "kubectl describe nodes", argv: [][]string{append(slices.Clone(kc), "describe", "nodes")}, seed: true,
			check: func(out []byte) error { return expectNodes(out, nodes, "Name:               gpu-000\n") }},
		{name: "kubectl get pods -A -o json | jq", argv: [][]string{append(slices.Clone(kc), "get", "pods", "-A", "-o", "json"), {"jq", "-c", gpuPodsFilter}}, seed: true,
			check: func(out []byte) error {
				var got []map[string]string
				if err := json.Unmarshal(out, &got); err != nil {
					return fmt.Errorf("jq's output: %w", err)
				}
				if len(got) != gpuPods {
					return fmt.Errorf("jq kept %d pods, want the %d using the GPU", len(got), gpuPods)
				}
				return nil
			}},
	}
	if uncompressed {
		cmds = append(cmds, command{name: "gpuslice status --disable-compression", argv: [][]string{{gpuslice, "status", "--kubeconfig", kubeconfig, "--disable-compression"}}, check: statusTable})
	}
	return cmds
}

// warmUp runs each command once (discovery caches, the API server's
// caches) and checks what it printed.
func warmUp(cmds []command) error {
	for _, c := range cmds {
		var out bytes.Buffer
		if _, err := c.run(&out); err != nil {
			return fmt.Errorf("warm-up, %s: %w", c.name, err)
		}
		if err := c.check(out.Bytes()); err != nil {
			return fmt.Errorf("warm-up, %s: %w\n%s", c.name, err, head(out.Bytes()))
		}
	}
	return nil
}

// expectNodes checks that every node appears: the last one by name, and
// the first in the form the command prints it.
func expectNodes(out []byte, nodes int, first string) error {
	if !bytes.Contains(out, []byte(first)) || !bytes.Contains(out, []byte(nodeName(nodes-1))) {
		return fmt.Errorf("output lacks node %s or %s", strings.TrimSpace(first), nodeName(nodes-1))
	}
	return nil
}

func head(b []byte) string {
	if len(b) > 2000 {
		b = b[:2000]
	}
	return string(b)
}

// run starts every stage, pipes each into the next and waits for all;
// the last stage's output goes to out, or /dev/null.
func (c command) run(out io.Writer) (sample, error) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return sample{}, err
	}
	defer devNull.Close()
	procs := make([]*exec.Cmd, len(c.argv))
	var stderr bytes.Buffer
	for i, argv := range c.argv {
		procs[i] = exec.Command(argv[0], argv[1:]...)
		procs[i].Stderr = &stderr
	}
	for i := 0; i+1 < len(procs); i++ {
		r, w, err := os.Pipe()
		if err != nil {
			return sample{}, err
		}
		defer r.Close()
		defer w.Close()
		procs[i].Stdout, procs[i+1].Stdin = w, r
	}
	last := procs[len(procs)-1]
	last.Stdout = devNull
	if out != nil {
		last.Stdout = out
	}
	start := time.Now()
	for _, p := range procs {
		if err := p.Start(); err != nil {
			return sample{}, err
		}
	}
	// Close this process's copies of the pipes, so each reader sees EOF.
	for i := 0; i+1 < len(procs); i++ {
		procs[i].Stdout.(*os.File).Close()
		procs[i+1].Stdin.(*os.File).Close()
	}
	var s sample
	var errs []error
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(p.Path), err))
		}
		s.rssKiB += p.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	}
	s.wall = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("%w\n%s", err, head(stderr.Bytes()))
	}
	return s, nil
}

// row is one command's distribution over the rounds.
type row struct {
	Command   string  `json:"command"`
	Runs      int     `json:"runs"`
	MedianS   float64 `json:"median_s"`
	P90S      float64 `json:"p90_s"`
	MaxS      float64 `json:"max_s"`
	MedianRSS float64 `json:"median_rss_mib"`
	MaxRSSMiB float64 `json:"max_rss_mib"`
}

func summarize(name string, ss []sample) row {
	walls := make([]time.Duration, len(ss))
	rss := make([]int64, len(ss))
	for i, s := range ss {
		walls[i], rss[i] = s.wall, s.rssKiB
	}
	slices.Sort(walls)
	slices.Sort(rss)
	return row{Command: name, Runs: len(ss), MedianS: benchstat.Percentile(walls, 0.5).Seconds(), P90S: benchstat.Percentile(walls, 0.9).Seconds(),
		MaxS: walls[len(walls)-1].Seconds(), MedianRSS: float64(benchstat.Percentile(rss, 0.5)) / 1024, MaxRSSMiB: float64(rss[len(rss)-1]) / 1024}
}

type result struct {
	Machine     map[string]string `json:"machine"`
	Started     string            `json:"started"`
	Kubectl     string            `json:"kubectl"`
	Nodes       int               `json:"nodes"`
	Pods        int               `json:"pods"`
	GPUPods     int               `json:"gpu_pods"`
	ReplicaSets int               `json:"replicasets"`
	LoadBefore  string            `json:"loadavg_before"`
	LoadAfter   string            `json:"loadavg_after"`
	Rows        []row             `json:"rows"`
	Ratio       float64           `json:"pipelines_over_status"`
	Aims        map[string]bool   `json:"aims"`
}

func (r result) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "%d GPU nodes, %d running pods (%d using the GPU), %d ReplicaSets; kubectl %s; %s, %s CPUs (%s), GOMAXPROCS %s\n",
		r.Nodes, r.Pods, r.GPUPods, r.ReplicaSets, r.Kubectl, m["go"], m["cpus"], m["cpu"], m["gomaxprocs"])
	fmt.Fprintf(w, "load average before: %s; after: %s\n\n", r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "%-34s %4s %9s %9s %9s %12s %12s\n", "command", "runs", "median", "p90", "max", "RSS median", "RSS max")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "%-34s %4d %8.3fs %8.3fs %8.3fs %8.1f MiB %8.1f MiB\n", x.Command, x.Runs, x.MedianS, x.P90S, x.MaxS, x.MedianRSS, x.MaxRSSMiB)
	}
	fmt.Fprintf(w, "\npipelines / status (medians): %.1fx\n", r.Ratio)
	var aims []string
	for _, k := range slices.Sorted(maps.Keys(r.Aims)) {
		verdict := "met"
		if !r.Aims[k] {
			verdict = "MISSED"
		}
		aims = append(aims, k+": "+verdict)
	}
	fmt.Fprintf(w, "aims: %s\n", strings.Join(aims, "; "))
}

// loadAverage is /proc/loadavg's first three fields: the machine is shared.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// profile runs what `gpuslice status` does, in-process, under the CPU
// profiler: listing through a protobuf client, and the ledger.
func profile(ctx context.Context, base *rest.Config, path string) error {
	cfg := rest.CopyConfig(base)
	cfg.ContentType = k8sruntime.ContentTypeProtobuf
	cfg.AcceptContentTypes = k8sruntime.ContentTypeProtobuf + "," + k8sruntime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	for range 10 {
		report, err := snapshot.Ledger(ctx, cs, ledger.Options{})
		if err != nil {
			return err
		}
		if err := ledger.WriteTable(io.Discard, report, false); err != nil {
			return err
		}
	}
	return nil
}
