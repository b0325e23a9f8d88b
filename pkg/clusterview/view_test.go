package clusterview

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestRead(t *testing.T) {
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "homelabai", Labels: map[string]string{"kubernetes.io/hostname": "homelabai"}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}, Allocatable: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}}}
	dep := func(name string, ann map[string]string, replicas int32) appsv1.Deployment {
		d := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: name, Annotations: ann}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas)}}
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelabai"}
		d.Spec.Template.Annotations = map[string]string{"gpu-memory": "4Gi"}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("1")}}}}
		return d
	}
	pending := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "ollama-x", OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "ollama-1", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"}}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	rs := appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "ollama-1", OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "ollama", Controller: ptr.To(true)}}}}
	c := &Cluster{
		Input: ledger.Input{Nodes: []corev1.Node{node}, Pods: []corev1.Pod{pending}, ReplicaSets: []appsv1.ReplicaSet{rs}},
		Deployments: []appsv1.Deployment{
			dep("ollama", map[string]string{workload.AnnotationPreemptible: "true"}, 1),
			dep("released", map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationReleasedReplicas: "3", workload.AnnotationReleasedNode: "homelabai", workload.AnnotationReleasedBy: "gpuslice-arbiter"}, 0),
			dep("broken", map[string]string{workload.AnnotationPreemptible: "maybe"}, 1),
			dep("unmanaged", nil, 1),
		},
		Classes: policy.PriorityClasses{},
	}
	v, err := Read(c, Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Workloads) != 2 || len(v.Invalid) != 1 || !strings.Contains(v.Invalid[0].Err.Error(), `"maybe"`) {
		t.Fatalf("workloads %d, invalid %+v", len(v.Workloads), v.Invalid)
	}
	ollama, released := v.Workloads[0], v.Workloads[1]
	if len(ollama.Pods) != 1 || !ollama.OnNode("homelabai") || ollama.Ready != 0 || ollama.Memory == nil || ollama.Memory.Max.String() != "4Gi" {
		t.Errorf("ollama: pods %d, nodes %v, ready %d, memory %v", len(ollama.Pods), ollama.Nodes, ollama.Ready, ollama.Memory)
	}
	if ok, why := ollama.Healthy(); ok || why != "0 of 1 pod(s) Running" {
		t.Errorf("ollama healthy = %v %q", ok, why)
	}
	if released.Record == nil || released.Record.Replicas != 3 || !released.OnNode("homelabai") || !released.PodsGone() {
		t.Errorf("released: %+v on %v", released.Record, released.Nodes)
	}
}
