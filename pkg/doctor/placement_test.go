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
		{"no constraint", corev1.PodSpec{}, true, false},
		{"selector hit", corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"}}, true, false},
		{"selector typo", corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelab-ai"}}, false, false},
		{"In", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "gpubox", "homelabai")}})}, true, false},
		{"NotIn", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("kubernetes.io/hostname", corev1.NodeSelectorOpNotIn, "homelabai")}})}, false, false},
		{"Exists and Gt ANDed", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/gpu.present", corev1.NodeSelectorOpExists), expr("nvidia.com/gpu.memory", corev1.NodeSelectorOpGt, "16000")}})}, false, false},
		{"Lt", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/gpu.memory", corev1.NodeSelectorOpLt, "16000")}})}, true, false},
		{"DoesNotExist", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("nvidia.com/mig.strategy", corev1.NodeSelectorOpDoesNotExist)}})}, true, false},
		{"terms ORed", corev1.PodSpec{Affinity: affinity(
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "attic")}},
			corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "homelabai")}},
		)}, true, false},
		{"empty term matches nothing", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{})}, false, false},
		{"selector and affinity both apply", corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"},
			Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				expr("kubernetes.io/hostname", corev1.NodeSelectorOpIn, "gpubox")}}),
		}, false, false},
		{"bad operator", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			expr("a", "Near", "b")}})}, false, true},
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
		{"bound to the GPU node", workloadEvidence(KindDeployment, nil, pod("ai", "x", "homelabai", 1)), nodes, OK,
			[]string{"runs on GPU node homelabai", "nodeSelector kubernetes.io/hostname=homelabai"}},
		{"bound to a node without GPU", workloadEvidence(KindDeployment, nil, pod("media", "plex", "nas", 0, annotated)), nodes, Fail,
			[]string{"runs on node nas, which advertises no GPU resource", "kubernetes.io/hostname: homelabai"}},
		{"pending, selector matches", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1)), nodes, OK,
			[]string{"matches GPU node(s) homelabai"}},
		{"seed's node selector mismatch", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, selector("homelab-ai"))), nodes, Fail,
			[]string{"nodeSelector kubernetes.io/hostname=homelab-ai matches none of the 2 node(s)", `did you mean "homelabai"?`}},
		{"selector names the NAS", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, selector("nas"))), nodes, Fail,
			[]string{"matches only node(s) without a GPU resource: nas", "GPU nodes have homelabai"}},
		{"label no GPU node has", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{"gpu": "3080"}
		})), nodes, Fail, []string{"no GPU node has label gpu"}},
		{"template of a workload without pods", workloadEvidence(KindDeployment, pod("ai", "x", "", 1, selector("homelab-ai"))), nodes, Fail,
			[]string{"matches none"}},
		{"webhook-only without constraint", workloadEvidence(KindDeployment, nil, pod("media", "plex", "", 0, annotated, noSelector)), nodes, Warn,
			[]string{"may land on any of 2 node(s)", "nodeSelector kubernetes.io/hostname: homelabai"}},
		{"shares without constraint steer it", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, noSelector)), nodes, OK,
			[]string{"no node constraint matches GPU node(s) homelabai"}},
		{"no GPU node at all", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1)), []corev1.Node{plainNode("nas")}, Fail,
			[]string{"no node of 1 advertises a GPU resource", "nvidia-device-plugin"}},
		{"GPU node without the requested resource", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 0, func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
		})), nodes, Fail, []string{"none advertises nvidia.com/gpu"}},
		{"bad affinity operator", workloadEvidence(KindDeployment, nil, pod("ai", "x", "", 1, func(p *corev1.Pod) {
			p.Spec.Affinity = affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("a", "Near", "b")}})
		})), nodes, Fail, []string{`unknown operator "Near"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgePlacement(tc.w, tc.nodes, ledgerOf(t, tc.nodes)), tc.verdict, tc.contains...)
		})
	}
}
