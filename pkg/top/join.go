package top

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// join sets what the agents measured against the pods the API server lists.
type join struct {
	o         Options
	in        ledger.Input
	estimator *ledger.Estimator
	pods      map[podKey]*corev1.Pod
	// gpuMemory is the per-GPU memory of each node: what its agent
	// measured, else the node's GFD label or gpuslice.io/gpu-memory.
	gpuMemory map[string]map[string]int64 // node -> GPU index -> bytes
	nodeGPU   map[string]int64            // node -> from labels
	nodes     map[string]bool             // scraped
	rows      map[podKey]*PodUsage
}

type podKey struct{ namespace, name string }

func newJoin(in ledger.Input, o Options) *join {
	j := &join{
		o: o, in: in,
		estimator: ledger.NewEstimator(in, ledger.Options{}),
		pods:      map[podKey]*corev1.Pod{},
		gpuMemory: map[string]map[string]int64{},
		nodeGPU:   map[string]int64{},
		nodes:     map[string]bool{},
		rows:      map[podKey]*PodUsage{},
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		j.pods[podKey{p.Namespace, p.Name}] = p
	}
	if report, err := ledger.Build(in, ledger.Options{}); err == nil {
		for _, n := range report.Nodes {
			j.nodeGPU[n.Name] = n.GPUMemoryBytes
		}
	}
	return j
}

func (j *join) addAgent(am *agentMetrics) {
	j.nodes[am.node] = true
	mem := map[string]int64{}
	for _, g := range am.gpus {
		mem[g.Index] = g.TotalBytes
	}
	j.gpuMemory[am.node] = mem
	for _, s := range am.containers {
		if j.o.Namespace != "" && s.namespace != j.o.Namespace {
			continue
		}
		k := podKey{s.namespace, s.pod}
		row := j.rows[k]
		if row == nil {
			row = &PodUsage{Namespace: s.namespace, Name: s.pod, Node: am.node}
			j.rows[k] = row
		}
		row.MemoryBytes += s.bytes
		row.Containers = append(row.Containers, ContainerUsage{Name: s.container, GPU: s.gpu, MemoryBytes: s.bytes})
		if !slices.Contains(row.GPUs, s.gpu) {
			row.GPUs = append(row.GPUs, s.gpu)
		}
	}
}

// finish adds the GPU pods on scraped nodes that hold nothing (idle),
// sets budgets and statuses, and sorts by memory held.
func (j *join) finish() []PodUsage {
	for i := range j.in.Pods {
		p := &j.in.Pods[i]
		k := podKey{p.Namespace, p.Name}
		if j.rows[k] != nil || !j.nodes[p.Spec.NodeName] || !ledger.IsGPUPod(p, ledger.Options{}) ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed ||
			(j.o.Namespace != "" && p.Namespace != j.o.Namespace) {
			continue
		}
		j.rows[k] = &PodUsage{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName}
	}
	out := make([]PodUsage, 0, len(j.rows))
	for k, row := range j.rows {
		slices.SortFunc(row.GPUs, compareIndex)
		slices.SortFunc(row.Containers, func(a, b ContainerUsage) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), compareIndex(a.GPU, b.GPU))
		})
		j.budget(row, j.pods[k])
		out = append(out, *row)
	}
	slices.SortFunc(out, func(a, b PodUsage) int {
		return cmp.Or(cmp.Compare(b.MemoryBytes, a.MemoryBytes), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// budget sets the pod's declared memory and its status against it.
func (j *join) budget(row *PodUsage, pod *corev1.Pod) {
	if pod == nil {
		row.BudgetSource = "unknown: pod not found in the API server (deleted since the agent read it?)"
	} else {
		row.Budget, row.BudgetSource = j.estimator.PodMemory(pod, j.perGPUMemory(row))
	}
	switch {
	case row.MemoryBytes == 0:
		row.Status = StatusIdle
	case row.Budget == nil:
		row.Status = StatusNoBudget
	case row.MemoryBytes > row.Budget.Max.Value():
		row.Status, row.OverBytes = StatusOverBudget, row.MemoryBytes-row.Budget.Max.Value()
	default:
		row.Status = StatusOK
	}
}

// perGPUMemory is what GPU_MEMORY_UTILIZATION is a fraction of: the
// measured size of the first GPU the pod uses (or of the node's first
// GPU), else the ledger's figure from node labels.
func (j *join) perGPUMemory(row *PodUsage) int64 {
	mem := j.gpuMemory[row.Node]
	for _, g := range row.GPUs {
		if b := mem[g]; b > 0 {
			return b
		}
	}
	indexes := make([]string, 0, len(mem))
	for i := range mem {
		indexes = append(indexes, i)
	}
	slices.SortFunc(indexes, compareIndex)
	if len(indexes) > 0 && mem[indexes[0]] > 0 {
		return mem[indexes[0]]
	}
	return j.nodeGPU[row.Node]
}
