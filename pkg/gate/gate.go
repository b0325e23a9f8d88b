// Package gate is the admission gate's decision, from the cluster's
// fail-closed rule "no new AI GPU load while media is broken": a new pod
// of a preemptible GPU workload is refused while a protected workload on
// a node it may land on is unhealthy, or while no such node has the free
// shares it requests. An annotation with a reason lets it in anyway.
//
// Deciding is pure: the caller (the webhook) reads the cluster into a
// clusterview.View and passes the nodes and PriorityClasses it listed.
package gate

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Options are what deciding needs besides the view.
type Options struct {
	// Nodes are the cluster's nodes: their labels are what a pod's
	// nodeSelector matches (the view keeps only their ledger).
	Nodes []corev1.Node
	// Classes are the cluster's PriorityClasses, for the policy of a pod
	// without a controller.
	Classes policy.PriorityClasses
	// Ledger says which resources are GPU resources; the view's ledger
	// must have been built with the same.
	Ledger ledger.Options
}

// Decision is the gate's answer for one pod.
type Decision struct {
	Allowed bool
	// Message says why: for a denial what is wrong and how to fix it, for
	// a break-glass admission the denial it overrode.
	Message string
	// BreakGlass is the annotation's value when it let in a pod the gate
	// would have refused; empty otherwise.
	BreakGlass string
	// Workload is the pod's owner (Kind "Pod" for a pod without one);
	// empty for pods the gate does not look at (not GPU pods).
	Workload workload.Ref
}

// KindPod is Decision.Workload's Kind for a pod without a controller.
const KindPod = "Pod"

// Decide says whether pod may be created now. pod is as it will be
// stored: mutated, with its namespace set.
func Decide(v *clusterview.View, pod *corev1.Pod, opt Options) Decision {
	if !ledger.IsGPUPod(pod, opt.Ledger) {
		return Decision{Allowed: true, Message: "not a GPU pod"}
	}
	ref, pol, ok := policyOf(v, pod, opt)
	d := Decision{Allowed: true, Workload: ref}
	switch {
	case !ok:
		d.Message = ref.Qualified() + " has no arbitration policy"
		for _, bad := range v.Invalid {
			if bad.Ref == ref {
				d.Message = fmt.Sprintf("%s is not gated: its policy is invalid (%v)", ref.Qualified(), bad.Err)
			}
		}
		return d
	case !pol.Preemptible:
		d.Message = ref.Qualified() + " is not preemptible"
		return d
	}

	nodes := candidates(&pod.Spec, v.Ledger, opt.Nodes)
	problems := unhealthyProtected(v, nodes, opt.Nodes)
	if p := shortOfShares(pod, nodes, opt.Ledger); p != "" {
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		d.Message = "protected workloads healthy and shares free"
		return d
	}
	where := "on its pod template"
	if ref.Kind == KindPod {
		where = "on the pod"
	}
	msg := fmt.Sprintf("admission gate: preemptible %s may not start new pods: %s; to admit this pod anyway, set annotation %s=REASON %s",
		ref.Qualified(), strings.Join(problems, "; "), workload.AnnotationBreakGlass, where)
	reason, set := pod.Annotations[workload.AnnotationBreakGlass]
	if reason = strings.TrimSpace(reason); reason != "" {
		return Decision{Allowed: true, Message: msg, BreakGlass: reason, Workload: ref}
	}
	if set {
		msg += fmt.Sprintf(" (%s is set but empty: its value must say why)", workload.AnnotationBreakGlass)
	}
	return Decision{Message: msg, Workload: ref}
}

// policyOf finds the pod's workload and its policy: the view's for a
// Deployment or StatefulSet, the pod's own annotations for a pod without
// a controller. ok is false when there is none, or it does not parse.
func policyOf(v *clusterview.View, pod *corev1.Pod, opt Options) (workload.Ref, policy.Policy, bool) {
	kind, name := v.Owners.Of(pod)
	ref := workload.Ref{Kind: kind, Namespace: pod.Namespace, Name: name}
	if kind == KindPod {
		if ref.Name == "" {
			ref.Name = pod.GenerateName + "*"
		}
		// The arbiter ignores pods without a controller; the gate still
		// honours what they say about themselves.
		p, err := policy.Parse(pod.Annotations, pod.Spec.PriorityClassName, opt.Classes, nil)
		return ref, p, err == nil
	}
	if w := v.Find(ref); w != nil {
		return ref, w.Policy, true
	}
	return ref, policy.Policy{}, false
}

// candidates are the GPU nodes the pod may land on: its nodeName, or those
// its nodeSelector matches. Affinity is not evaluated, as in the arbiter's
// view: the pod counts against every GPU node its nodeSelector allows.
func candidates(spec *corev1.PodSpec, r *ledger.Report, nodes []corev1.Node) []*ledger.NodeReport {
	sel := labels.SelectorFromSet(spec.NodeSelector)
	var out []*ledger.NodeReport
	for i := range r.Nodes {
		nr := &r.Nodes[i]
		if spec.NodeName != "" && spec.NodeName != nr.Name {
			continue
		}
		if sel.Matches(labels.Set(labelsOf(nodes, nr.Name))) {
			out = append(out, nr)
		}
	}
	return out
}

func labelsOf(nodes []corev1.Node, name string) map[string]string {
	for i := range nodes {
		if nodes[i].Name == name {
			return nodes[i].Labels
		}
	}
	return nil
}

// unhealthyProtected describes every protected workload on one of nodes
// that does not serve. One without pods counts on the nodes its template
// selects, so a Plex whose pod is gone still holds the gate shut.
func unhealthyProtected(v *clusterview.View, nodes []*ledger.NodeReport, all []corev1.Node) []string {
	var out []string
	for _, w := range v.Workloads {
		if !w.Policy.Protected {
			continue
		}
		healthy, why := w.Healthy()
		if healthy {
			continue
		}
		on := w.Nodes
		if len(on) == 0 && w.Template != nil {
			for _, n := range candidates(&w.Template.Spec, v.Ledger, all) {
				on = append(on, n.Name)
			}
		}
		shared := sharedNodes(on, nodes)
		if len(shared) == 0 {
			continue
		}
		nsName := w.Ref.Namespace + "/" + w.Ref.Name
		out = append(out, fmt.Sprintf("protected %s is unhealthy on %s (%s): repair %s first (gpuslice plex-health -n %s, gpuslice doctor %s -n %s)",
			w.Ref.Qualified(), strings.Join(shared, ", "), why, nsName, w.Ref.Namespace, w.Ref.String(), w.Ref.Namespace))
	}
	return out
}

func sharedNodes(names []string, nodes []*ledger.NodeReport) []string {
	var out []string
	for _, n := range nodes {
		if slices.Contains(names, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

// holdersShown bounds the workloads a share shortage names per node.
const holdersShown = 3

// shortOfShares describes the shortage when no node has the free shares
// the pod requests, or returns "" when one has them (or it requests none).
func shortOfShares(pod *corev1.Pod, nodes []*ledger.NodeReport, opt ledger.Options) string {
	reqs := ledger.PodRequests(pod, opt)
	if len(reqs) == 0 {
		return ""
	}
	names := make([]string, 0, len(reqs))
	for name := range reqs {
		names = append(names, name)
	}
	slices.Sort(names)
	asked := make([]string, len(names))
	for i, name := range names {
		asked[i] = fmt.Sprintf("%d %s", reqs[name], name)
	}
	if len(nodes) == 0 {
		return fmt.Sprintf("it requests %s and no GPU node matches its nodeName and nodeSelector", strings.Join(asked, ", "))
	}
	var free []string
	for _, n := range nodes {
		short := nodeShortage(n, names, reqs)
		if len(short) == 0 {
			return ""
		}
		free = append(free, n.Name+" "+strings.Join(short, " and "))
	}
	return fmt.Sprintf("it requests %s; free: %s; free shares with `gpuslice release WORKLOAD -n NAMESPACE`, or wait for the arbiter to make room",
		strings.Join(asked, ", "), strings.Join(free, ", "))
}

// nodeShortage lists the requested resources n lacks, as "1 of 8" with
// the resource named when the pod requests several, and who holds them.
func nodeShortage(n *ledger.NodeReport, names []string, reqs map[string]int64) []string {
	var out []string
	for _, name := range names {
		var use ledger.ResourceUsage
		if i := slices.IndexFunc(n.Resources, func(r ledger.ResourceUsage) bool { return r.Name == name }); i >= 0 {
			use = n.Resources[i]
		}
		if use.Free >= reqs[name] {
			continue
		}
		s := fmt.Sprintf("%d of %d", max(use.Free, 0), use.Allocatable)
		if len(names) > 1 {
			s += " " + name
		}
		if h := holders(n, name); h != "" {
			s += " (held by " + h + ")"
		}
		out = append(out, s)
	}
	return out
}

// holders names the workloads holding the most of resource on n.
func holders(n *ledger.NodeReport, resource string) string {
	var ws []ledger.Workload
	for _, w := range n.Workloads {
		if w.Resource == resource && w.Shares > 0 {
			ws = append(ws, w)
		}
	}
	slices.SortStableFunc(ws, func(a, b ledger.Workload) int { return cmp.Compare(b.Shares, a.Shares) })
	var parts []string
	for i, w := range ws {
		if i == holdersShown {
			parts = append(parts, fmt.Sprintf("%d more", len(ws)-holdersShown))
			break
		}
		parts = append(parts, fmt.Sprintf("%s/%s %d", w.Namespace, w.Name, w.Shares))
	}
	return strings.Join(parts, ", ")
}
