package doctor

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/gpuslice/gpuslice/internal/suggest"
	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// k8s.io/component-helpers' nodeaffinity is not in gpuslice's module graph,
// so required node affinity is evaluated with apimachinery's label
// selectors, which have the same operators.
var nodeSelectorOps = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn:           selection.In,
	corev1.NodeSelectorOpNotIn:        selection.NotIn,
	corev1.NodeSelectorOpExists:       selection.Exists,
	corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt:           selection.GreaterThan,
	corev1.NodeSelectorOpLt:           selection.LessThan,
}

// nodeMatches says whether the pod's nodeSelector and required node
// affinity allow node, as the scheduler's NodeAffinity plugin does.
func nodeMatches(spec *corev1.PodSpec, node *corev1.Node) (bool, error) {
	if !labels.SelectorFromSet(spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false, nil
	}
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true, nil
	}
	for _, term := range spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		ok, err := termMatches(term, node)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil // terms are ORed; none matched
}

// termMatches ANDs a term's expressions; an empty term matches nothing.
func termMatches(term corev1.NodeSelectorTerm, node *corev1.Node) (bool, error) {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false, nil
	}
	byLabel, err := requirementSelector(term.MatchExpressions)
	if err != nil {
		return false, err
	}
	// metadata.name is the only field the scheduler supports.
	byField, err := requirementSelector(term.MatchFields)
	if err != nil {
		return false, err
	}
	return byLabel.Matches(labels.Set(node.Labels)) && byField.Matches(labels.Set{"metadata.name": node.Name}), nil
}

func requirementSelector(reqs []corev1.NodeSelectorRequirement) (labels.Selector, error) {
	sel := labels.NewSelector()
	for _, r := range reqs {
		op, ok := nodeSelectorOps[r.Operator]
		if !ok {
			return nil, fmt.Errorf("node affinity %s: unknown operator %q", r.Key, r.Operator)
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil {
			return nil, fmt.Errorf("node affinity %s %s %v: %w", r.Key, r.Operator, r.Values, err)
		}
		sel = sel.Add(*req)
	}
	return sel, nil
}

// describeConstraints writes the pod's node constraints for evidence:
// "nodeSelector kubernetes.io/hostname=homelabai and required node
// affinity (1 term(s))".
func describeConstraints(spec *corev1.PodSpec) string {
	var parts []string
	if len(spec.NodeSelector) > 0 {
		parts = append(parts, "nodeSelector "+labels.SelectorFromSet(spec.NodeSelector).String())
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		n := len(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms)
		parts = append(parts, fmt.Sprintf("required node affinity (%d term(s))", n))
	}
	return strings.Join(parts, " and ")
}

// gpuNodes are the ledger's GPU nodes that advertise res (any GPU
// resource when res is "").
func gpuNodes(r *ledger.Report, res string) []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, n := range r.Nodes {
		for _, u := range n.Resources {
			if (res == "" || u.Name == res) && u.Allocatable > 0 {
				out = append(out, n.Name)
				break
			}
		}
	}
	return out
}

// candidateNodes are the GPU nodes (advertising what the pod requests) its
// placement allows.
func candidateNodes(pod *corev1.Pod, nodes []corev1.Node, r *ledger.Report) []string {
	var gpu []string
	reqs := shareRequests(pod)
	if len(reqs) == 0 {
		gpu = gpuNodes(r, "")
	}
	for _, res := range slices.Sorted(maps.Keys(reqs)) {
		for _, n := range gpuNodes(r, res) {
			if !slices.Contains(gpu, n) {
				gpu = append(gpu, n)
			}
		}
	}
	var out []string
	for i := range nodes {
		if ok, _ := nodeMatches(&pod.Spec, &nodes[i]); ok && slices.Contains(gpu, nodes[i].Name) {
			out = append(out, nodes[i].Name)
		}
	}
	sort.Strings(out)
	return out
}

// specPod is the pod whose spec placement and shares are judged on: a
// pending pod (it is what the scheduler is looking at), else the template.
func (w *WorkloadEvidence) specPod() *corev1.Pod {
	for _, p := range w.livePods() {
		if p.Spec.NodeName == "" {
			return p
		}
	}
	return w.templatePod()
}

// JudgePlacement judges the seed's "Node selector mismatch": bound pods
// must be on a GPU node, and an unbound workload's nodeSelector and
// required node affinity must match a node advertising what it requests.
func JudgePlacement(w *WorkloadEvidence, nodes []corev1.Node, r *ledger.Report) Result {
	res := Result{Check: CheckPlacement}
	gpu := gpuNodes(r, "")
	var boundTo []string
	for _, p := range w.livePods() {
		if p.Spec.NodeName == "" {
			continue
		}
		if !slices.Contains(gpu, p.Spec.NodeName) {
			res.Verdict, res.Object = Fail, "pod/"+p.Name
			res.Evidence = fmt.Sprintf("pod %s runs on node %s, which advertises no GPU resource (GPU nodes: %s)", p.Name, p.Spec.NodeName, listOrNone(gpu))
			res.Remedy = "pin the workload to a GPU node with a nodeSelector (e.g. kubernetes.io/hostname: " + firstOr(gpu, "<gpu-node>") + ") and delete the pod so it is rescheduled"
			return res
		}
		if !slices.Contains(boundTo, p.Spec.NodeName) {
			boundTo = append(boundTo, p.Spec.NodeName)
		}
	}

	pod := w.specPod()
	constraints := describeConstraints(&pod.Spec)
	if len(boundTo) > 0 && pod.Spec.NodeName != "" {
		res.Verdict = OK
		res.Evidence = "runs on GPU node " + strings.Join(boundTo, ", ")
		if constraints != "" {
			res.Evidence += " (" + constraints + ")"
		}
		return res
	}

	var matching, matchingGPU []string
	for i := range nodes {
		ok, err := nodeMatches(&pod.Spec, &nodes[i])
		if err != nil {
			res.Verdict, res.Evidence = Fail, err.Error()
			res.Remedy = "fix the operator or values in spec.affinity.nodeAffinity (operators: In, NotIn, Exists, DoesNotExist, Gt, Lt)"
			return res
		}
		if ok {
			matching = append(matching, nodes[i].Name)
			if slices.Contains(gpu, nodes[i].Name) {
				matchingGPU = append(matchingGPU, nodes[i].Name)
			}
		}
	}
	candidates := candidateNodes(pod, nodes, r)
	reqs := shareRequests(pod)
	switch {
	case len(gpu) == 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("no node of %d advertises a GPU resource (nvidia.com/...)", len(nodes))
		res.Remedy = "check the NVIDIA device plugin runs on the GPU node: kubectl get pods -n kube-system -l app.kubernetes.io/name=nvidia-device-plugin; kubectl describe node <gpu-node> | grep nvidia"
	case constraints == "" && len(reqs) == 0:
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("no nodeSelector or node affinity and no share request: the pod may land on any of %d node(s), GPU or not", len(nodes))
		res.Remedy = "pin it to the GPU node: nodeSelector kubernetes.io/hostname: " + firstOr(gpu, "<gpu-node>") + " (or nvidia.com/gpu.present: \"true\")"
	case len(matching) == 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("%s matches none of the %d node(s)", constraints, len(nodes))
		res.Remedy = placementRemedy(pod, nodes, gpu)
	case len(matchingGPU) == 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("%s matches only node(s) without a GPU resource: %s", constraints, strings.Join(matching, ", "))
		res.Remedy = placementRemedy(pod, nodes, gpu)
	case len(candidates) == 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("%s matches GPU node(s) %s, but none advertises %s", orNoConstraint(constraints), strings.Join(matchingGPU, ", "), strings.Join(slices.Sorted(maps.Keys(reqs)), ", "))
		res.Remedy = "request the resource the node advertises (kubectl describe node " + matchingGPU[0] + " | grep nvidia.com), or fix the device plugin's config (gpuslice config validate --from-cluster)"
	default:
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("%s matches GPU node(s) %s", orNoConstraint(constraints), strings.Join(candidates, ", "))
	}
	return res
}

// placementRemedy names the GPU nodes' labels for each nodeSelector key,
// with the nearest value when the selector looks like a typo.
func placementRemedy(pod *corev1.Pod, nodes []corev1.Node, gpu []string) string {
	var fixes []string
	for _, key := range slices.Sorted(maps.Keys(pod.Spec.NodeSelector)) {
		want := pod.Spec.NodeSelector[key]
		var values []string
		for i := range nodes {
			if v, ok := nodes[i].Labels[key]; ok && slices.Contains(gpu, nodes[i].Name) && !slices.Contains(values, v) {
				values = append(values, v)
			}
		}
		switch best, _ := suggest.Closest(want, values); {
		case len(values) == 0:
			fixes = append(fixes, fmt.Sprintf("no GPU node has label %s: remove it from nodeSelector", key))
		case best != "":
			fixes = append(fixes, fmt.Sprintf("nodeSelector %s: %q matches no GPU node; did you mean %q?", key, want, best))
		case !slices.Contains(values, want):
			fixes = append(fixes, fmt.Sprintf("nodeSelector %s: %q matches no GPU node; GPU nodes have %s", key, want, strings.Join(values, ", ")))
		}
	}
	fixes = append(fixes, "set spec.template.spec.nodeSelector (or the node affinity) to labels of a GPU node: "+firstOr(gpu, "<gpu-node>")+" (kubectl get node --show-labels)")
	return strings.Join(fixes, "; ")
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// orNoConstraint names the absence of node constraints in evidence.
func orNoConstraint(constraints string) string {
	if constraints == "" {
		return "no node constraint"
	}
	return constraints
}
