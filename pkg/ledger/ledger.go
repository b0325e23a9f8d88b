// Package ledger is the share and VRAM ledger of a cluster's GPU nodes: which
// workloads hold time-sliced GPU shares, what is left, and whether the GPU
// memory the workloads expect to use fits the node.
//
// It is pure logic: the caller lists Nodes, Pods and their owners and passes
// them in, so the same code serves the CLI, tests and offline dumps.
package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Names the ledger reads from the cluster besides the workload
// vocabulary (pkg/workload).
const (
	// GPU Feature Discovery labels (NVIDIA/k8s-device-plugin internal/lm).
	LabelGPUProduct  = "nvidia.com/gpu.product"
	LabelGPUCount    = "nvidia.com/gpu.count"
	LabelGPUMemory   = "nvidia.com/gpu.memory" // MiB per GPU
	LabelGPUReplicas = "nvidia.com/gpu.replicas"

	nvidiaPrefix = "nvidia.com/"
)

// How a workload gets at the GPU, as the seed document names them.
const (
	MethodShares  = "shares"  // requests a GPU resource only
	MethodWebhook = "webhook" // gpu-directories annotation only: unaccounted
	MethodHybrid  = "hybrid"  // both
)

// Percent values that are not a number.
const (
	PercentVariable = "Variable" // webhook-only workloads
	PercentNone     = "-"        // no allocatable to divide by
)

// Input is what the caller listed from the cluster.
type Input struct {
	Nodes       []corev1.Node
	Pods        []corev1.Pod
	ReplicaSets []appsv1.ReplicaSet // Pod -> ReplicaSet -> Deployment
	Jobs        []batchv1.Job       // Pod -> Job -> CronJob (optional)
	ConfigMaps  []corev1.ConfigMap  // GPU_MEMORY_UTILIZATION via envFrom or configMapKeyRef
	// Managed are the Deployments and StatefulSets whose release and
	// lower records the report lists (optional).
	Managed []ManagedWorkload
}

// Options tune and filter the report.
type Options struct {
	// SharedResources are counted as GPU shares in addition to every
	// "nvidia.com/..." resource; nil means [DefaultSharedResource].
	SharedResources []string
	// DefaultMemory is the expected VRAM per pod for workloads without an
	// estimate of their own, keyed by "namespace/name" or by name.
	DefaultMemory map[string]MemoryRange
	// Node and Namespace select what is listed ("" = all). Node totals
	// still count every pod, since they describe the node.
	Node, Namespace string
}

// Report is the ledger of every GPU node.
type Report struct {
	Nodes []NodeReport `json:"nodes"` // sorted by name
	// Pending are GPU workloads whose pods are not bound to a node yet: their
	// requests are listed but not counted as allocated anywhere.
	Pending []Workload `json:"pending,omitempty"`
	// Interventions are the workloads gpuslice released or lowered, with
	// who, when, why and how to undo it.
	Interventions []Intervention `json:"interventions,omitempty"`
	// Warnings are cluster data the ledger could not use (bad labels...).
	Warnings []string `json:"warnings,omitempty"`
}

// NodeReport is one GPU node.
type NodeReport struct {
	Name           string `json:"name"`
	GPUProduct     string `json:"gpuProduct,omitempty"`
	GPUCount       int    `json:"gpuCount"`              // 0 = unknown
	GPUReplicas    int    `json:"gpuReplicas,omitempty"` // time-slicing replicas per GPU
	GPUMemoryBytes int64  `json:"gpuMemoryBytes"`        // per GPU, 0 = unknown
	// NotReady says why the node takes no pods (its Ready condition is
	// False or Unknown); empty when it is Ready. A NotReady node has no
	// free shares: nothing new can start there.
	NotReady  string          `json:"notReady,omitempty"`
	Resources []ResourceUsage `json:"resources"` // sorted by name
	Workloads []Workload      `json:"workloads"`
	VRAM      VRAMSummary     `json:"vram"`
}

// ResourceUsage is one GPU resource of a node.
type ResourceUsage struct {
	Name        string `json:"name"`
	Capacity    int64  `json:"capacity"`
	Allocatable int64  `json:"allocatable"`
	Allocated   int64  `json:"allocated"`
	Free        int64  `json:"free"` // allocatable - allocated; 0 on a NotReady node
}

// Workload is the pods of one owner on one node (or pending) that use one
// GPU resource; webhook-only workloads have no Resource.
type Workload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Method    string `json:"method"`
	Resource  string `json:"resource,omitempty"`
	Shares    int64  `json:"shares"`
	// Percent is Shares of the node's allocatable: of its time-slicing
	// replicas, not of GPU time. Empty when pending.
	Percent string `json:"percent,omitempty"`
	Pods    int    `json:"pods"`
	// Memory is the expected VRAM of all Pods together; nil when unknown.
	Memory       *MemoryRange `json:"memory,omitempty"`
	MemorySource string       `json:"memorySource,omitempty"`
}

// VRAMSummary adds up the expected VRAM of every workload on a node.
type VRAMSummary struct {
	AvailableBytes int64    `json:"availableBytes"` // per-GPU memory x GPU count; 0 = unknown
	MinBytes       int64    `json:"minBytes"`
	MaxBytes       int64    `json:"maxBytes"`
	Unknown        []string `json:"unknown,omitempty"` // namespace/name without an estimate
	Risk           string   `json:"risk,omitempty"`    // set iff AvailableBytes is known and MaxBytes exceeds it
}

// Build computes the ledger. It fails only on bad Options or a Node filter
// that names no GPU node; bad cluster data becomes Report.Warnings.
func Build(in Input, opt Options) (*Report, error) {
	for key, m := range opt.DefaultMemory {
		if err := m.validate(); err != nil {
			return nil, fmt.Errorf("default memory for %q: %w", key, err)
		}
	}
	b := newBuilder(in, opt)
	r := &Report{}

	nodes := map[string]*nodeState{}
	for i := range in.Nodes {
		if ns := b.nodeState(&in.Nodes[i], &r.Warnings); ns != nil {
			nodes[ns.report.Name] = ns
		}
	}
	if opt.Node != "" && nodes[opt.Node] == nil {
		return nil, fmt.Errorf("node %q not found or has no GPU resources", opt.Node)
	}

	pending := groups{}
	for i := range in.Pods {
		pod := &in.Pods[i]
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue // terminal pods release their devices
		}
		reqs := podRequests(pod, b.isGPUResource)
		annotated := pod.Annotations[workload.AnnotationProfiles] != ""
		if len(reqs) == 0 && !annotated {
			continue
		}
		kind, name := b.owner(pod)
		if pod.Spec.NodeName == "" {
			pending.add(pod, kind, name, reqs, annotated)
			continue
		}
		ns := nodes[pod.Spec.NodeName]
		if ns == nil {
			continue // not a GPU node, or not listed
		}
		for res, q := range reqs {
			ns.usage(res).Allocated += q
		}
		ns.groups.add(pod, kind, name, reqs, annotated)
	}

	for _, name := range sortedKeys(nodes) {
		ns := nodes[name]
		nr := b.finishNode(ns)
		if opt.Node == "" || opt.Node == name {
			r.Nodes = append(r.Nodes, nr)
		}
	}
	r.Interventions = interventions(in.Managed, b.listed, opt.Node, &r.Warnings)
	if opt.Node == "" {
		for _, g := range pending.sorted() {
			if b.listed(g.key.namespace) {
				r.Pending = append(r.Pending, g.workload())
			}
		}
	}
	return r, nil
}

// builder holds the indexes Build looks things up in.
type builder struct {
	opt        Options
	shared     map[string]bool
	owners     map[string]map[string]ownerRef // kind -> namespace/name -> controller
	configMaps map[string]*corev1.ConfigMap   // namespace/name
}

func newBuilder(in Input, opt Options) *builder {
	shared := opt.SharedResources
	if shared == nil {
		shared = []string{workload.SharedResource}
	}
	b := &builder{
		opt:        opt,
		shared:     map[string]bool{},
		owners:     indexOwners(in.ReplicaSets, in.Jobs),
		configMaps: map[string]*corev1.ConfigMap{},
	}
	for _, s := range shared {
		b.shared[s] = true
	}
	for i := range in.ConfigMaps {
		cm := &in.ConfigMaps[i]
		b.configMaps[nsName(cm.Namespace, cm.Name)] = cm
	}
	return b
}

func (b *builder) isGPUResource(name corev1.ResourceName) bool {
	return b.shared[string(name)] || strings.HasPrefix(string(name), nvidiaPrefix)
}

func (b *builder) listed(namespace string) bool {
	return b.opt.Namespace == "" || b.opt.Namespace == namespace
}

// nodeState is a GPU node while pods are being added up.
type nodeState struct {
	report    NodeReport
	resources map[string]*ResourceUsage
	groups    groups
}

func (ns *nodeState) usage(name string) *ResourceUsage {
	u := ns.resources[name]
	if u == nil {
		// A pod can be bound to a node that no longer advertises the
		// resource (device plugin restarted): still account for it.
		u = &ResourceUsage{Name: name}
		ns.resources[name] = u
	}
	return u
}

// nodeState returns nil for nodes without GPU resources.
func (b *builder) nodeState(node *corev1.Node, warnings *[]string) *nodeState {
	ns := &nodeState{resources: map[string]*ResourceUsage{}, groups: groups{}}
	for name, q := range node.Status.Capacity {
		if b.isGPUResource(name) {
			ns.usage(string(name)).Capacity = q.Value()
		}
	}
	for name, q := range node.Status.Allocatable {
		if b.isGPUResource(name) {
			ns.usage(string(name)).Allocatable = q.Value()
		}
	}
	if len(ns.resources) == 0 {
		return nil
	}

	warn := func(format string, args ...any) {
		*warnings = append(*warnings, fmt.Sprintf("node %s: ", node.Name)+fmt.Sprintf(format, args...))
	}
	labelInt := func(key string) int {
		v, ok := node.Labels[key]
		if !ok {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			warn("ignoring label %s=%q: not a count", key, v)
			return 0
		}
		return n
	}

	nr := &ns.report
	nr.Name = node.Name
	nr.NotReady = NotReady(node)
	nr.GPUProduct = node.Labels[LabelGPUProduct]
	nr.GPUReplicas = labelInt(LabelGPUReplicas)
	nr.GPUCount = labelInt(LabelGPUCount)
	if nr.GPUCount == 0 {
		// Without GFD the unshared resource still counts physical GPUs.
		if q, ok := node.Status.Capacity["nvidia.com/gpu"]; ok && nr.GPUReplicas <= 1 {
			nr.GPUCount = int(q.Value())
		}
	}
	if mib := labelInt(LabelGPUMemory); mib > 0 {
		nr.GPUMemoryBytes = int64(mib) * mebi
	}
	for _, meta := range []map[string]string{node.Labels, node.Annotations} {
		if v, ok := meta[workload.AnnotationNodeGPUMemory]; ok {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				warn("ignoring %s=%q: not a positive quantity", workload.AnnotationNodeGPUMemory, v)
				continue
			}
			nr.GPUMemoryBytes = q.Value() // annotations are read last and win
		}
	}
	return ns
}

// finishNode fills in free shares, percentages, memory and the VRAM sum.
// Totals use every workload; only the listed ones are kept.
func (b *builder) finishNode(ns *nodeState) NodeReport {
	nr := ns.report
	nr.Resources = []ResourceUsage{}
	for _, name := range sortedKeys(ns.resources) {
		u := ns.resources[name]
		u.Free = u.Allocatable - u.Allocated
		if nr.NotReady != "" {
			u.Free = 0
		}
		nr.Resources = append(nr.Resources, *u)
	}

	nr.Workloads = []Workload{}
	avail := nr.GPUMemoryBytes * int64(max(nr.GPUCount, 1))
	nr.VRAM.AvailableBytes = avail
	counted := map[ownerKey]bool{} // a workload using two resources has one VRAM footprint
	for _, g := range ns.groups.sorted() {
		w := g.workload()
		if w.Resource != "" {
			w.Percent = formatPercent(w.Shares, ns.resources[w.Resource].Allocatable)
		}
		w.Memory, w.MemorySource = b.workloadMemory(g, nr.GPUMemoryBytes)
		if id := g.key.ownerKey; !counted[id] {
			counted[id] = true
			if w.Memory == nil {
				nr.VRAM.Unknown = append(nr.VRAM.Unknown, nsName(id.namespace, id.name))
			} else {
				nr.VRAM.MinBytes += w.Memory.Min.Value()
				nr.VRAM.MaxBytes += w.Memory.Max.Value()
			}
		}
		if b.listed(w.Namespace) {
			nr.Workloads = append(nr.Workloads, w)
		}
	}
	if avail > 0 && nr.VRAM.MaxBytes > avail {
		nr.VRAM.Risk = fmt.Sprintf("Potential total %s, available %s: CUDA OOM risk if all workloads are active",
			formatRange(nr.VRAM.MinBytes, nr.VRAM.MaxBytes), formatBytes(avail))
	}
	return nr
}

// ownerKey names a workload.
type ownerKey struct{ namespace, kind, name string }

// groupKey is one row: a workload and one GPU resource ("" for webhook-only).
type groupKey struct {
	ownerKey
	resource string
}

type group struct {
	key       groupKey
	shares    int64
	annotated bool
	pods      []*corev1.Pod
}

type groups map[groupKey]*group

func (gs groups) add(pod *corev1.Pod, kind, name string, reqs map[string]int64, annotated bool) {
	add := func(res string, q int64) {
		k := groupKey{ownerKey{pod.Namespace, kind, name}, res}
		g := gs[k]
		if g == nil {
			g = &group{key: k}
			gs[k] = g
		}
		g.shares += q
		g.annotated = g.annotated || annotated
		g.pods = append(g.pods, pod)
	}
	if len(reqs) == 0 {
		add("", 0)
	}
	for res, q := range reqs {
		add(res, q)
	}
}

// sorted orders rows as the seed's table does: webhook-only workloads
// first (their use is unaccounted, so they head the list), then by
// namespace, name, kind and resource.
func (gs groups) sorted() []*group {
	out := make([]*group, 0, len(gs))
	for _, g := range gs {
		out = append(out, g)
	}
	slices.SortFunc(out, func(x, y *group) int {
		a, b := x.key, y.key
		return cmp.Or(
			cmp.Compare(boolRank(a.resource != ""), boolRank(b.resource != "")),
			cmp.Compare(a.namespace, b.namespace),
			cmp.Compare(a.name, b.name),
			cmp.Compare(a.kind, b.kind),
			cmp.Compare(a.resource, b.resource),
		)
	})
	return out
}

func (g *group) workload() Workload {
	w := Workload{
		Namespace: g.key.namespace,
		Kind:      g.key.kind,
		Name:      g.key.name,
		Resource:  g.key.resource,
		Shares:    g.shares,
		Pods:      len(g.pods),
	}
	switch {
	case g.key.resource == "":
		w.Method, w.Percent = MethodWebhook, PercentVariable
	case g.annotated:
		w.Method = MethodHybrid
	default:
		w.Method = MethodShares
	}
	return w
}

// formatPercent writes part/whole like the seed: 12.5%, 25%, 33.33%.
func formatPercent(part, whole int64) string {
	if whole <= 0 {
		return PercentNone
	}
	return trimFloat(float64(part)*100/float64(whole), 2) + "%"
}

// trimFloat formats v with at most prec decimals and no trailing zeros.
func trimFloat(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// boolRank sorts false first.
func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nsName(namespace, name string) string { return namespace + "/" + name }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// NotReady says why node cannot take pods: its Ready condition is False
// or Unknown (the kubelet stopped reporting). It is "" for a Ready node,
// and for one without a Ready condition yet (as a node the kubelet has
// only just registered), which the scheduler still considers.
func NotReady(node *corev1.Node) string {
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
			continue
		}
		s := "NotReady"
		if c.Status == corev1.ConditionUnknown {
			s += " (status Unknown: the kubelet stopped reporting)"
		}
		if c.Reason != "" || c.Message != "" {
			s += ": " + strings.TrimPrefix(strings.TrimSpace(c.Reason+" "+c.Message), " ")
		}
		if !c.LastTransitionTime.IsZero() {
			s += " since " + c.LastTransitionTime.UTC().Format("2006-01-02 15:04Z")
		}
		return s
	}
	return ""
}

// IsGPUPod reports whether the ledger counts pod as a GPU workload: it
// requests an nvidia.com/ resource (or one of opt's shared resources), or
// carries the gpu-directories annotation. Callers use it to fetch only what
// GPU pods need, such as the ConfigMaps they read.
func IsGPUPod(pod *corev1.Pod, opt Options) bool { return GPUPods(opt)(pod) }

// GPUPods is IsGPUPod for many pods, with opt's resources looked up once.
func GPUPods(opt Options) func(*corev1.Pod) bool {
	isGPU := newBuilder(Input{}, opt).isGPUResource
	return func(pod *corev1.Pod) bool {
		return pod.Annotations[workload.AnnotationProfiles] != "" || len(podRequests(pod, isGPU)) > 0
	}
}
