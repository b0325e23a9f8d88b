package ledger

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

const gpubox = "gpubox"

// gpuboxCluster is a node with two GPUs time-sliced 4 ways without
// renaming, so 8 nvidia.com/gpu shares.
func gpuboxCluster() *cluster {
	c := &cluster{}
	return c.node(newNode(gpubox, gpuResource("nvidia.com/gpu", 8), gfd("NVIDIA-A10-SHARED", "2", "24576", "4")))
}

// ledgerLines flattens the share side of a report so a test states it in
// a few lines: one per resource, one per workload, one per pending row.
func ledgerLines(r *Report) []string {
	var out []string
	for _, n := range r.Nodes {
		for _, u := range n.Resources {
			out = append(out, fmt.Sprintf("%s %s %d/%d free %d", n.Name, u.Name, u.Allocated, u.Allocatable, u.Free))
		}
		for _, w := range n.Workloads {
			out = append(out, fmt.Sprintf("%s %s/%s/%s %s %s %d %s pods=%d",
				n.Name, w.Namespace, w.Kind, w.Name, w.Method, w.Resource, w.Shares, w.Percent, w.Pods))
		}
	}
	for _, w := range r.Pending {
		out = append(out, fmt.Sprintf("pending %s/%s/%s %s %s %d pods=%d",
			w.Namespace, w.Kind, w.Name, w.Method, w.Resource, w.Shares, w.Pods))
	}
	return out
}

func TestBuildShares(t *testing.T) {
	const gpu = "nvidia.com/gpu"
	tests := []struct {
		name  string
		setup func(*cluster)
		opt   Options
		want  []string
	}{{
		name: "two GPUs with 4 replicas each make 8 shares",
		setup: func(c *cluster) {
			c.deploy("ml", "train", gpubox, 1, shares(gpu, 3))
			c.pods(newPod("ml", "notebook", gpubox, shares(gpu, 1)))
		},
		want: []string{
			"gpubox nvidia.com/gpu 4/8 free 4",
			"gpubox ml/Pod/notebook shares nvidia.com/gpu 1 12.5% pods=1",
			"gpubox ml/Deployment/train shares nvidia.com/gpu 3 37.5% pods=1",
		},
	}, {
		name: "succeeded and failed pods hold no share",
		setup: func(c *cluster) {
			c.pods(
				newPod("ml", "done", gpubox, shares(gpu, 2), phase(corev1.PodSucceeded)),
				newPod("ml", "crashed", gpubox, shares(gpu, 2), phase(corev1.PodFailed)),
				newPod("ml", "running", gpubox, shares(gpu, 1)),
			)
		},
		want: []string{
			"gpubox nvidia.com/gpu 1/8 free 7",
			"gpubox ml/Pod/running shares nvidia.com/gpu 1 12.5% pods=1",
		},
	}, {
		name: "bound pending pods hold shares, unscheduled ones are only listed",
		setup: func(c *cluster) {
			c.pods(
				newPod("ml", "pulling", gpubox, shares(gpu, 2), phase(corev1.PodPending)),
				newPod("ml", "waiting", "", shares(gpu, 3), webhook()),
				newPod("ml", "no-gpu", ""),
			)
		},
		want: []string{
			"gpubox nvidia.com/gpu 2/8 free 6",
			"gpubox ml/Pod/pulling shares nvidia.com/gpu 2 25% pods=1",
			"pending ml/Pod/waiting hybrid nvidia.com/gpu 3 pods=1",
		},
	}, {
		name: "init container request above the containers sets the pod request",
		setup: func(c *cluster) {
			c.pods(newPod("ml", "warmup", gpubox,
				container(withRequests("serve", gpu, 1)),
				initContainer(withRequests("load", gpu, 3))))
		},
		want: []string{
			"gpubox nvidia.com/gpu 3/8 free 5",
			"gpubox ml/Pod/warmup shares nvidia.com/gpu 3 37.5% pods=1",
		},
	}, {
		name: "owners: StatefulSet, DaemonSet, CronJob, bare Job, unknown ReplicaSet, bare pod",
		setup: func(c *cluster) {
			c.job(batchv1.Job{ObjectMeta: metav1.ObjectMeta{
				Namespace: "ml", Name: "eval-1", OwnerReferences: controllerRef("CronJob", "eval"),
			}})
			c.pods(
				newPod("ml", "db-0", gpubox, ownedBy("StatefulSet", "db"), shares(gpu, 1)),
				newPod("ml", "db-1", gpubox, ownedBy("StatefulSet", "db"), shares(gpu, 1)),
				newPod("ml", "agent-x", gpubox, ownedBy("DaemonSet", "agent"), webhook()),
				newPod("ml", "eval-1-abc", gpubox, ownedBy("Job", "eval-1"), shares(gpu, 1)),
				newPod("ml", "once-abc", gpubox, ownedBy("Job", "once"), shares(gpu, 1)),
				newPod("ml", "orphan-5d-abc", gpubox, ownedBy("ReplicaSet", "orphan-5d"), shares(gpu, 1)),
				newPod("ml", "debug", gpubox, shares(gpu, 1)),
			)
		},
		want: []string{
			"gpubox nvidia.com/gpu 6/8 free 2",
			"gpubox ml/DaemonSet/agent webhook  0 Variable pods=1",
			"gpubox ml/StatefulSet/db shares nvidia.com/gpu 2 25% pods=2",
			"gpubox ml/Pod/debug shares nvidia.com/gpu 1 12.5% pods=1",
			"gpubox ml/CronJob/eval shares nvidia.com/gpu 1 12.5% pods=1",
			"gpubox ml/Job/once shares nvidia.com/gpu 1 12.5% pods=1",
			"gpubox ml/ReplicaSet/orphan-5d shares nvidia.com/gpu 1 12.5% pods=1",
		},
	}, {
		name: "namespace filter lists its workloads but the node still counts all",
		setup: func(c *cluster) {
			c.pods(
				newPod("ml", "a", gpubox, shares(gpu, 2)),
				newPod("web", "b", gpubox, shares(gpu, 1)),
				newPod("ml", "c", "", shares(gpu, 1)),
				newPod("web", "d", "", shares(gpu, 1)),
			)
		},
		opt: Options{Namespace: "web"},
		want: []string{
			"gpubox nvidia.com/gpu 3/8 free 5",
			"gpubox web/Pod/b shares nvidia.com/gpu 1 12.5% pods=1",
			"pending web/Pod/d shares nvidia.com/gpu 1 pods=1",
		},
	}, {
		name: "node filter keeps one node and drops unscheduled pods",
		setup: func(c *cluster) {
			c.node(newNode("other", gpuResource(gpu, 1)))
			c.pods(
				newPod("ml", "a", gpubox, shares(gpu, 2)),
				newPod("ml", "b", "other", shares(gpu, 1)),
				newPod("ml", "c", "", shares(gpu, 1)),
			)
		},
		opt: Options{Node: "other"},
		want: []string{
			"other nvidia.com/gpu 1/1 free 0",
			"other ml/Pod/b shares nvidia.com/gpu 1 100% pods=1",
		},
	}, {
		name: "a workload spread over two nodes is a row on each",
		setup: func(c *cluster) {
			c.node(newNode("other", gpuResource(gpu, 4)))
			pods, rs := deployment("ml", "serve", gpubox, 2, shares(gpu, 1))
			pods[1].Spec.NodeName = "other"
			c.in.ReplicaSets = append(c.in.ReplicaSets, rs)
			c.pods(pods...)
		},
		want: []string{
			"gpubox nvidia.com/gpu 1/8 free 7",
			"gpubox ml/Deployment/serve shares nvidia.com/gpu 1 12.5% pods=1",
			"other nvidia.com/gpu 1/4 free 3",
			"other ml/Deployment/serve shares nvidia.com/gpu 1 25% pods=1",
		},
	}, {
		name: "configured shared resource and several resources per pod",
		setup: func(c *cluster) {
			c.node(newNode("custom", gpuResource("example.com/gpu-share", 4), gpuResource("nvidia.com/mig-1g.5gb", 7)))
			c.pods(newPod("ml", "both", "custom", shares("example.com/gpu-share", 1), shares("nvidia.com/mig-1g.5gb", 2)))
		},
		opt: Options{Node: "custom", SharedResources: []string{"example.com/gpu-share"}},
		want: []string{
			"custom example.com/gpu-share 1/4 free 3",
			"custom nvidia.com/mig-1g.5gb 2/7 free 5",
			"custom ml/Pod/both shares example.com/gpu-share 1 25% pods=1",
			"custom ml/Pod/both shares nvidia.com/mig-1g.5gb 2 28.57% pods=1",
		},
	}, {
		name: "a NotReady node has no free shares, whatever it advertises",
		setup: func(c *cluster) {
			c.node(newNode("lost", gpuResource(gpu, 4), nodeCondition(corev1.ConditionUnknown)))
			c.node(newNode("down", gpuResource(gpu, 4), nodeCondition(corev1.ConditionFalse)))
			c.node(newNode("up", gpuResource(gpu, 4), nodeCondition(corev1.ConditionTrue)))
			c.pods(newPod("ml", "a", "down", shares(gpu, 1)))
		},
		want: []string{
			"down nvidia.com/gpu 1/4 free 0",
			"down ml/Pod/a shares nvidia.com/gpu 1 25% pods=1",
			"gpubox nvidia.com/gpu 0/8 free 8",
			"lost nvidia.com/gpu 0/4 free 0",
			"up nvidia.com/gpu 0/4 free 4",
		},
	}, {
		name: "GPU pods on nodes without GPU resources and plain pods are ignored",
		setup: func(c *cluster) {
			c.node(newNode("cpu-only"))
			c.pods(
				newPod("media", "plex", "cpu-only", webhook()),
				newPod("ml", "web", gpubox),
			)
		},
		want: []string{"gpubox nvidia.com/gpu 0/8 free 8"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gpuboxCluster()
			tt.setup(c)
			r, err := Build(c.in, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := ledgerLines(r); !slices.Equal(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		want string
	}{
		{"unknown node", Options{Node: "nope"}, `node "nope" not found or has no GPU resources`},
		{"node without GPU", Options{Node: "worker1"}, `node "worker1" not found`},
		{
			"inverted default memory",
			Options{DefaultMemory: map[string]MemoryRange{"plex": {Min: mustRange("2Gi").Min, Max: mustRange("1Gi").Max}}},
			`default memory for "plex": minimum 2Gi is above maximum 1Gi`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(seedCluster(false).in, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBuildNodeInfo(t *testing.T) {
	tests := []struct {
		name     string
		node     corev1.Node
		product  string
		count    int
		memory   int64
		warnings int
	}{
		{"GFD labels", newNode("n", gpuResource("nvidia.com/gpu", 8), gfd("NVIDIA-A10-SHARED", "2", "24576", "4")), "NVIDIA-A10-SHARED", 2, 24 * gibi, 0},
		{"no GFD: count from nvidia.com/gpu", newNode("n", gpuResource("nvidia.com/gpu", 2)), "", 2, 0, 0},
		{"override annotation wins over GFD", newNode("n", gpuResource("nvidia.com/gpu", 1), gfd("X", "1", "12288", "1"), nodeAnnotation(workload.AnnotationNodeGPUMemory, "11Gi")), "X", 1, 11 * gibi, 0},
		{"override label", newNode("n", gpuResource("nvidia.com/gpu", 1), nodeLabel(workload.AnnotationNodeGPUMemory, "6Gi")), "", 1, 6 * gibi, 0},
		{"bad labels warn", newNode("n", gpuResource("nvidia.com/gpu", 1), nodeLabel(LabelGPUMemory, "lots"), nodeAnnotation(workload.AnnotationNodeGPUMemory, "-1Gi")), "", 1, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(Input{Nodes: []corev1.Node{tt.node}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := r.Nodes[0]
			if n.GPUProduct != tt.product || n.GPUCount != tt.count || n.GPUMemoryBytes != tt.memory || len(r.Warnings) != tt.warnings {
				t.Errorf("got product %q count %d memory %d warnings %q, want %q %d %d %d warnings",
					n.GPUProduct, n.GPUCount, n.GPUMemoryBytes, r.Warnings, tt.product, tt.count, tt.memory, tt.warnings)
			}
		})
	}
}

func TestFormatPercent(t *testing.T) {
	tests := []struct {
		part, whole int64
		want        string
	}{
		{1, 8, "12.5%"}, {2, 8, "25%"}, {4, 8, "50%"}, {8, 8, "100%"}, {0, 8, "0%"},
		{1, 3, "33.33%"}, {1, 16, "6.25%"}, {2, 7, "28.57%"}, {1, 0, "-"},
	}
	for _, tt := range tests {
		if got := formatPercent(tt.part, tt.whole); got != tt.want {
			t.Errorf("formatPercent(%d, %d) = %q, want %q", tt.part, tt.whole, got, tt.want)
		}
	}
}
