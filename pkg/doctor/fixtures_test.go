package doctor

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const shared = workload.SharedResource

// homelabai is the seed's node: 8 shares, 12 GiB.
func homelabai() corev1.Node { return gpuNode("homelabai", 8) }

func gpuNode(name string, shares int64) corev1.Node {
	q := *resource.NewQuantity(shares, resource.DecimalSI)
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, ledger.LabelGPUCount: "1", ledger.LabelGPUMemory: "12288", ledger.LabelGPUReplicas: "8",
		}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{shared: q}, Allocatable: corev1.ResourceList{shared: q}},
	}
}

func plainNode(name string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
}

type podOpt func(*corev1.Pod)

// pod is a pod of Deployment-like workload name in ns; shares 0 means no
// request, node "" unscheduled.
func pod(ns, name, node string, shares int64, opts ...podOpt) *corev1.Pod {
	c := corev1.Container{Name: name, Image: "busybox"}
	if shares > 0 {
		q := *resource.NewQuantity(shares, resource.DecimalSI)
		c.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{shared: q}, Limits: corev1.ResourceList{shared: q}}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-abc12", Namespace: ns, Annotations: map[string]string{}, UID: types.UID("uid-" + ns + "-" + name),
			// Owned straight by a Deployment, so the ledger names it as
			// kubectl users do, without a ReplicaSet in between.
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: name, Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{
			NodeName:     node,
			NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"},
			Containers:   []corev1.Container{c},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if node != "" {
		p.Status.Phase = corev1.PodRunning
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func annotated(p *corev1.Pod) { p.Annotations[workload.AnnotationProfiles] = "nvidia" }

func withRuntimeClass(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("nvidia") }

// withDevices is what the webhook injects for the nvidia profile.
func withDevices(p *corev1.Pod) {
	for _, d := range []string{"nvidia0", "nvidiactl", "nvidia-uvm"} {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: d, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/" + d}}})
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].VolumeMounts = append(p.Spec.Containers[i].VolumeMounts, corev1.VolumeMount{Name: d, MountPath: "/dev/" + d})
		}
	}
}

func withEnv(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
		}
	}
}

func ledgerOf(t *testing.T, nodes []corev1.Node, pods ...*corev1.Pod) *ledger.Report {
	t.Helper()
	in := ledger.Input{Nodes: nodes}
	for _, p := range pods {
		in.Pods = append(in.Pods, *p)
	}
	r, err := ledger.Build(in, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// workload wraps pods as a bare-pod workload, or a Deployment's when
// template is set.
func workloadEvidence(kind string, template *corev1.Pod, pods ...*corev1.Pod) *WorkloadEvidence {
	w := &WorkloadEvidence{Kind: kind}
	for _, p := range pods {
		w.Pods = append(w.Pods, PodEvidence{Pod: p})
		w.Namespace, w.Name = p.Namespace, strings.TrimSuffix(p.Name, "-abc12")
	}
	if kind == KindPod && len(pods) > 0 {
		w.Name = pods[0].Name
	}
	if template != nil {
		w.Namespace, w.Name = template.Namespace, strings.TrimSuffix(template.Name, "-abc12")
		w.Template = &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: template.Annotations, Labels: template.Labels}, Spec: template.Spec}
		w.Desired = ptr.To[int32](1)
	}
	return w
}

// expect checks a result's verdict and that its evidence and remedy
// together contain every substring.
func expect(t *testing.T, got Result, verdict Verdict, substrings ...string) {
	t.Helper()
	if got.Verdict != verdict {
		t.Errorf("verdict %s, want %s\nevidence: %s\nremedy: %s", got.Verdict, verdict, got.Evidence, got.Remedy)
	}
	text := got.Evidence + "\n" + got.Remedy
	for _, s := range substrings {
		if !strings.Contains(text, s) {
			t.Errorf("%s result lacks %q\nevidence: %s\nremedy: %s", got.Check, s, got.Evidence, got.Remedy)
		}
	}
}
