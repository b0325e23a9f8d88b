package doctor

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func affinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func TestDoctorNodeMatches(t *testing.T) {
	node := homelabai()
	node.Labels["nvidia.com/gpu.present"] = "true"
	tests := []struct {
		name    string
		spec    corev1.PodSpec
		want    bool
		wantErr bool
	}{
		{name: "no constraint", spec: corev1.PodSpec{}, want: true},
		{name: "selector hit", spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"}}, want: true},
		{name: "selector typo", spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelab-ai"}}, want: false},
		{name: "In", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "gpubox", "homelabai")}})}, want: true},
		{name: "NotIn", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("kubernetes.io/hostname", corev1.NodeSelectorOpNotIn, "homelabai")}})}, want: false},
		{name: "Exists and Gt ANDed", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/gpu.present", corev1.NodeSelectorOpExists), expr("nvidia.com/gpu.memory", corev1.NodeSelectorOpGt, "16000")}})}, want: false},
		{name: "Lt", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/gpu.memory", corev1.NodeSelectorOpLt, "16000")}})}, want: true},
		{name: "DoesNotExist", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/mig.strategy", corev1.NodeSelectorOpDoesNotExist)}})}, want: true},
		{name: "terms ORed", spec: corev1.PodSpec{Affinity: affinity(
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "attic")}},
			corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "homelabai")}},
		)}, want: true},
		{name: "empty term matches nothing", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{})}, want: false},
		{name: "selector and affinity both apply", spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"},
			Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				expr("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "gpubox")}}),
		}, want: false},
		{name: "bad operator", spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("a", "Near", "b")}})}, want: false, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nodeMatches(&tc.spec, &node)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("nodeMatches = %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDoctorJudgePlacement(t *testing.T) {
	nodes := []corev1.Node{homelabai(), plainNode("nas")}
	selector := func(v string) podOpt {
		return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": v} }
	}
	noSelector := func(p *corev1.Pod) { p.Spec.NodeSelector = nil }
	tests := []struct {
		name     string
		w        *WorkloadEvidence
		nodes    []corev1.Node
		verdict  Verdict
		contains []string
	}{
		{name: "bound to the GPU node", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "homelabai", 1)), nodes: nodes, verdict: OK,
			contains: []string{"runs on GPU node homelabai", "nodeSelector kubernetes.io/hostname=homelabai"}},
		{name: "bound to a node without GPU", w: workloadEvidence(KindDeployment, nil, pod("media", "plex", "nas", 0, annotated)), nodes: nodes, verdict: Fail,
			contains: []string{"runs on node nas, which advertises no GPU resource", "kubernetes.io/hostname: homelabai"}},
		{name: "pending, selector matches", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1)), nodes: nodes, verdict: OK,
			contains: []string{"matches GPU node(s) homelabai"}},
		{name: "seed's node selector mismatch", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, selector("homelab-ai"))), nodes: nodes, verdict: Fail,
			contains: []string{"nodeSelector kubernetes.io/hostname=homelab-ai matches none of the 2 node(s)", `did you mean "homelabai"?`}},
		{name: "selector names the NAS", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, selector("nas"))), nodes: nodes, verdict: Fail,
			contains: []string{"matches only node(s) without a GPU resource: nas", "GPU nodes have homelabai"}},
		{name: "label no GPU node has", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{"gpu": "3080"}
		})), nodes: nodes, verdict: Fail, contains: []string{"no GPU node has label gpu"}},
		{name: "template of a workload without pods", w: workloadEvidence(KindDeployment, pod("ai", "x", "", 1, selector("homelab-ai"))), nodes: nodes, verdict: Fail,
			contains: []string{"matches none"}},
		{name: "webhook-only without constraint", w: workloadEvidence(KindDeployment, nil, pod("media", "plex", "", 0, annotated, noSelector)), nodes: nodes, verdict: Warn,
			contains: []string{"may land on any of 2 node(s)", "nodeSelector kubernetes.io/hostname: homelabai"}},
		{name: "shares without constraint steer it", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, noSelector)), nodes: nodes, verdict: OK,
			contains: []string{"no node constraint matches GPU node(s) homelabai"}},
		{name: "no GPU node at all", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1)), nodes: []corev1.Node{plainNode("nas")}, verdict: Fail,
			contains: []string{"no node of 1 advertises a GPU resource", "nvidia-device-plugin"}},
		{name: "GPU node without the requested resource", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 0, func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
		})), nodes: nodes, verdict: Fail, contains: []string{"none advertises nvidia.com/gpu"}},
		{name: "bad affinity operator", w: workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, func(p *corev1.Pod) {
			p.Spec.Affinity = affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("a", "Near", "b")}})
		})), nodes: nodes, verdict: Fail, contains: []string{`unknown operator "Near"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgePlacement(tc.w, tc.nodes, ledgerOf(t, tc.nodes)), tc.verdict, tc.contains...)
		})
	}
}
