package ledger

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/gpuslice/gpuslice/internal/testutil/golden"
	"github.com/gpuslice/gpuslice/pkg/workload"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), got)
}

// mixedCluster adds to the seed cluster the shapes the seed lacks: a node
// with two time-sliced GPUs left unrenamed, a MIG node with two resources,
// a node without GFD (and NotReady), non-Deployment owners and an
// unscheduled pod.
func mixedCluster() *cluster {
	c := seedCluster(true)
	c.node(newNode("gpubox",
		gpuResource("nvidia.com/gpu", 8), // 2 GPUs x 4 replicas
		gfd("NVIDIA-A10-SHARED", "2", "24576", "4"),
	))
	c.pods(
		newPod("ml", "train-0", "gpubox", ownedBy("StatefulSet", "train"), shares("nvidia.com/gpu", 2), gpuMemory("10Gi-16Gi")),
		newPod("ml", "train-1", "gpubox", ownedBy("StatefulSet", "train"), shares("nvidia.com/gpu", 2), gpuMemory("10Gi-16Gi")),
		newPod("ml", "notebook", "gpubox", shares("nvidia.com/gpu", 1), gpuMemory("4Gi")),
		newPod("monitoring", "dcgm-exporter-7xk2p", "gpubox", ownedBy("DaemonSet", "dcgm-exporter"), webhook(), gpuMemory("256Mi")),
		newPod("ml", "finetune-7f9c", "", ownedBy("ReplicaSet", "finetune-7f9c"), shares("nvidia.com/gpu", 4)),
	)

	c.node(newNode("a100",
		gpuResource("nvidia.com/mig-1g.10gb", 4),
		gpuResource("nvidia.com/mig-3g.40gb", 1),
		gfd("NVIDIA-A100-80GB-PCIe", "1", "81920", "1"),
	))
	c.job(batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ml", Name: "nightly-eval-29123400", OwnerReferences: controllerRef("CronJob", "nightly-eval"),
	}})
	c.pods(
		newPod("ml", "nightly-eval-29123400-q8v4d", "a100", ownedBy("Job", "nightly-eval-29123400"),
			shares("nvidia.com/mig-1g.10gb", 1), gpuMemory("8Gi-10Gi")),
		newPod("ml", "llm-0", "a100", ownedBy("StatefulSet", "llm"), shares("nvidia.com/mig-3g.40gb", 1), gpuMemory("36Gi-40Gi")),
		newPod("ml", "eval-old-abcde", "a100", ownedBy("Job", "nightly-eval-29123300"),
			shares("nvidia.com/mig-1g.10gb", 1), phase(corev1.PodSucceeded)),
	)

	c.node(newNode("edge",
		gpuResource("nvidia.com/gpu", 1),
		nodeAnnotation(workload.AnnotationNodeGPUMemory, "8Gi"),
		nodeLabel(LabelGPUCount, "one"),
		nodeCondition(corev1.ConditionFalse),
	))
	c.pods(newPod("default", "cuda-test", "edge", shares("nvidia.com/gpu", 1)))
	return c
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file string
		in   *cluster
		wide bool
	}{
		{"seed-before.golden", seedCluster(false), false},
		{"seed-after.golden", seedCluster(true), false},
		{"seed-after-wide.golden", seedCluster(true), true},
		{"mixed.golden", mixedCluster(), false},
		{"mixed-wide.golden", mixedCluster(), true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, err := Build(tt.in.in, seedOptions())
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteTable(&buf, r, tt.wide); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.file, buf.Bytes())
		})
	}
}

// TestGoldenJSON pins the field names -o json and -o yaml expose.
func TestGoldenJSON(t *testing.T) {
	r, err := Build(seedCluster(true).in, seedOptions())
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "seed-after.json.golden", append(out, '\n'))
}
