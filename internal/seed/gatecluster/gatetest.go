// Package gatecluster builds the reference homelab as the admission gate
// reads it (an clusterview.Cluster), for the tests of package gate and of the
// webhook's gate.
package gatecluster

import (
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const shared = workload.SharedResource

// Cluster is the reference homelab: homelabai (8 shares) with Plex
// (protected), Whisper (2), Ollama (1) and TTS (1), and a second GPU node
// gpu2 (4 shares, empty), and node nas without a GPU. vLLM (preemptible,
// 2 shares, pinned to homelabai) has no pod yet.
type Cluster struct {
	clusterview.Cluster
}

// Homelab returns the reference cluster.
func Homelab() *Cluster {
	c := &Cluster{clusterview.Cluster{Classes: policy.PriorityClasses{
		"plex-media-critical": {ObjectMeta: metav1.ObjectMeta{Name: "plex-media-critical"}, Value: 1000000},
		"ai-dev-gpu":          {ObjectMeta: metav1.ObjectMeta{Name: "ai-dev-gpu"}, Value: 1000},
	}}}
	c.node("homelabai", 8)
	c.node("gpu2", 4)
	c.Nodes = append(c.Nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "nas", Labels: map[string]string{"kubernetes.io/hostname": "nas"}}})
	c.Workload("media", "plex", map[string]string{workload.AnnotationProtected: "true"}, "plex-media-critical", 0, "homelabai", true)
	c.Workload("ai", "whisper", nil, "", 2, "homelabai", true)
	c.Workload("ai", "ollama", nil, "", 1, "homelabai", true)
	c.Workload("ai", "tts", nil, "", 1, "homelabai", true)
	c.Workload("ai-dev", "vllm-server", map[string]string{workload.AnnotationPreemptible: "true"}, "ai-dev-gpu", 2, "homelabai", false)
	return c
}

func (c *Cluster) node(name string, shares int64) {
	q := corev1.ResourceList{shared: *resource.NewQuantity(shares, resource.DecimalSI)}
	c.Nodes = append(c.Nodes, corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "nvidia.com/gpu.present": "true"}},
		Status:     corev1.NodeStatus{Capacity: q, Allocatable: q},
	})
}

// Workload adds a one-replica Deployment of a GPU pod (gpu-directories,
// and shares when not 0) pinned to node (unpinned when empty), its
// ReplicaSet and, with withPod, its pod, Running and Ready on node.
func (c *Cluster) Workload(ns, name string, ann map[string]string, class string, shares int64, node string, withPod bool) {
	d := appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Annotations: ann},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{workload.AnnotationProfiles: "nvidia"}},
			Spec:       PodSpec(class, shares, node),
		}},
	}
	c.Deployments = append(c.Deployments, d)
	rs := appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-5d9c", OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: d.UID, Controller: ptr.To(true)},
	}}}
	c.ReplicaSets = append(c.ReplicaSets, rs)
	if withPod {
		p := c.NewPod(ns, name)
		p.Name = rs.Name + "-x7k2p"
		p.Spec.NodeName = node
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		c.Pods = append(c.Pods, *p)
	}
}

// PodSpec is a pod spec in PriorityClass class requesting shares of
// nvidia.com/gpu.shared, pinned to node unless it is empty.
func PodSpec(class string, shares int64, node string) corev1.PodSpec {
	s := corev1.PodSpec{PriorityClassName: class, Containers: []corev1.Container{{Name: "main"}}}
	if node != "" {
		s.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	if shares > 0 {
		q := corev1.ResourceList{shared: *resource.NewQuantity(shares, resource.DecimalSI)}
		s.Containers[0].Resources = corev1.ResourceRequirements{Requests: q, Limits: q}
	}
	return s
}

// NewPod is a new pod of the Deployment as its ReplicaSet creates it: from
// the template, with generateName and the ReplicaSet as controller.
func (c *Cluster) NewPod(ns, name string) *corev1.Pod {
	for _, d := range c.Deployments {
		if d.Namespace == ns && d.Name == name {
			rs := name + "-5d9c"
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: rs + "-", Annotations: maps.Clone(d.Spec.Template.Annotations),
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, Controller: ptr.To(true)}}},
				Spec: *d.Spec.Template.Spec.DeepCopy(),
			}
		}
	}
	panic("no Deployment " + ns + "/" + name)
}

// PlexNotReady makes Plex's pod run without passing readiness.
func (c *Cluster) PlexNotReady() {
	for i := range c.Pods {
		if c.Pods[i].Namespace == "media" {
			c.Pods[i].Status.Conditions[0].Status = corev1.ConditionFalse
		}
	}
}

// Hog takes shares of node with a workload of its own.
func (c *Cluster) Hog(node string, shares int64) {
	c.Workload("ai", "hog-"+node, nil, "", shares, node, true)
}

// NodeNotReady makes node's kubelet stop reporting, as the node lifecycle
// controller then marks it.
func (c *Cluster) NodeNotReady(node string) {
	for i := range c.Nodes {
		if c.Nodes[i].Name == node {
			c.Nodes[i].Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
				Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status."}}
		}
	}
}
