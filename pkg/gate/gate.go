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
	"maps"
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

// Code is what stands in the way of a pod starting now; each is an exit
// status of `gpuslice admit`, those of the cluster owner's
// check-gpu-admission.sh.
type Code int

// Codes, in the order Decision.Code picks the one to report.
const (
	CodeOK Code = 0
	// CodeSharesShort: no candidate node has the free shares requested.
	CodeSharesShort Code = 10
	// CodeNeverFits: the request exceeds what any candidate node
	// advertises in all: it can never be scheduled.
	CodeNeverFits Code = 11
	// CodeProtectedUnhealthy: a protected workload (Plex) on a candidate
	// node is not Running and Ready.
	CodeProtectedUnhealthy Code = 20
	// CodeNodeUnavailable: no GPU node matches the pod, or every one that
	// does is NotReady.
	CodeNodeUnavailable Code = 30
	// CodeClusterUnreadable: the cluster could not be read (the callers
	// set it; Decide never does).
	CodeClusterUnreadable Code = 31
)

// precedence orders the codes when several problems are found: what no
// waiting fixes first, then what any retry waits for.
var precedence = []Code{CodeClusterUnreadable, CodeNeverFits, CodeNodeUnavailable, CodeProtectedUnhealthy, CodeSharesShort}

// Problem is one reason the pod cannot start now.
type Problem struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Decision is the gate's answer for one pod.
type Decision struct {
	// Allowed is the admission gate's answer: false only for a pod of a
	// preemptible workload with Problems and no break-glass reason.
	Allowed bool `json:"allowed"`
	// Message says why: for a denial what is wrong and how to fix it, for
	// a break-glass admission the denial it overrode.
	Message string `json:"message"`
	// Problems are everything that stands in the way of the pod starting
	// now, whatever the workload's policy: the gate refuses preemptible
	// workloads for them, `gpuslice admit` reports them for any.
	Problems []Problem `json:"problems,omitempty"`
	// BreakGlass is the annotation's value when it let in a pod the gate
	// would have refused; empty otherwise.
	BreakGlass string `json:"breakGlass,omitempty"`
	// Workload is the pod's owner (Kind "Pod" for a pod without one);
	// empty for pods the gate does not look at (not GPU pods).
	Workload workload.Ref `json:"workload"`
}

// Code is the problem to report when there are several (by precedence),
// CodeOK when there is none.
func (d *Decision) Code() Code {
	codes := make([]Code, len(d.Problems))
	for i, p := range d.Problems {
		codes[i] = p.Code
	}
	return Worst(codes...)
}

// KindPod is Decision.Workload's Kind for a pod without a controller.
const KindPod = "Pod"

// Subject is a pod about to be created and what decides on it besides the
// cluster: its workload and that workload's policy.
type Subject struct {
	// Pod is as it will be stored: mutated, with its namespace set.
	Pod      *corev1.Pod
	Workload workload.Ref
	// Policy is the workload's; nil when it has none (or it does not parse).
	Policy *policy.Policy
	// Pods is how many such pods are to start (a Deployment's replicas);
	// below 1 counts as 1.
	Pods int32
	// Replaces says the pods take the place of the workload's current
	// ones (a manifest applied again), so the shares those hold count as
	// free.
	Replaces bool
}

// Decide says whether pod may be created now. pod is as it will be
// stored: mutated, with its namespace set. Its workload and policy are
// the view's (the pod's own annotations for a pod without a controller).
func Decide(v *clusterview.View, pod *corev1.Pod, opt Options) Decision {
	if !ledger.IsGPUPod(pod, opt.Ledger) {
		return Decision{Allowed: true, Message: "not a GPU pod"}
	}
	ref, pol, ok := policyOf(v, pod, opt)
	s := Subject{Pod: pod, Workload: ref}
	if ok {
		s.Policy = &pol
	}
	d := DecideFor(v, s, opt)
	if !ok {
		d.Message = ref.Qualified() + " has no arbitration policy"
		for _, bad := range v.Invalid {
			if bad.Ref == ref {
				d.Message = fmt.Sprintf("%s is not gated: its policy is invalid (%v)", ref.Qualified(), bad.Err)
			}
		}
	}
	return d
}

// DecideFor is the one decision behind the webhook's gate and `gpuslice
// admit`: every problem in the way of s's pods starting now, and the
// gate's answer, which refuses only preemptible workloads (others the
// scheduler places or leaves Pending as usual).
func DecideFor(v *clusterview.View, s Subject, opt Options) Decision {
	d := Decision{Allowed: true, Workload: s.Workload, Problems: problems(v, s, opt)}
	pod, ref := s.Pod, s.Workload
	switch {
	case s.Policy == nil:
		d.Message = ref.Qualified() + " has no arbitration policy"
		return d
	case !s.Policy.Preemptible:
		d.Message = ref.Qualified() + " is not preemptible"
		return d
	case len(d.Problems) == 0:
		d.Message = "protected workloads healthy and shares free"
		return d
	}
	msgs := make([]string, len(d.Problems))
	for i, p := range d.Problems {
		msgs[i] = p.Message
	}
	where := "on its pod template"
	if ref.Kind == KindPod {
		where = "on the pod"
	}
	d.Message = fmt.Sprintf("admission gate: preemptible %s may not start new pods: %s; to admit this pod anyway, set annotation %s=REASON %s",
		ref.Qualified(), strings.Join(msgs, "; "), workload.AnnotationBreakGlass, where)
	reason, set := pod.Annotations[workload.AnnotationBreakGlass]
	if reason = strings.TrimSpace(reason); reason != "" {
		d.BreakGlass = reason
		return d
	}
	if set {
		d.Message += fmt.Sprintf(" (%s is set but empty: its value must say why)", workload.AnnotationBreakGlass)
	}
	d.Allowed = false
	return d
}

// problems finds what stands in the way of s's pods: no GPU node to land
// on, a request no node can ever hold, a protected workload down where
// they would land (unless they are protected themselves), too few free
// shares.
func problems(v *clusterview.View, s Subject, opt Options) []Problem {
	var out []Problem
	nodes := candidates(&s.Pod.Spec, v.Ledger, opt.Nodes)
	reqs := ledger.PodRequests(s.Pod, opt.Ledger)
	if p := neverFits(reqs, nodes); p != "" {
		out = append(out, Problem{CodeNeverFits, p})
	}
	if p := unavailable(reqs, nodes); p != "" {
		out = append(out, Problem{CodeNodeUnavailable, p})
	}
	// Free shares only matter on a node that could hold the pod.
	countShares := len(out) == 0
	if s.Policy == nil || !s.Policy.Protected {
		for _, p := range unhealthyProtected(v, nodes, opt.Nodes) {
			out = append(out, Problem{CodeProtectedUnhealthy, p})
		}
	}
	if p := shortOfShares(s, reqs, nodes); countShares && p != "" {
		out = append(out, Problem{CodeSharesShort, p})
	}
	return out
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

// asked is a pod's requests as "2 nvidia.com/gpu.shared", sorted.
func asked(reqs map[string]int64) (names []string, text string) {
	names = slices.Sorted(maps.Keys(reqs))
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%d %s", reqs[name], name)
	}
	return names, strings.Join(parts, ", ")
}

// unavailable says why the pod has no GPU node to start on: none matches
// it, or each that does is NotReady; "" when one is Ready.
func unavailable(reqs map[string]int64, nodes []*ledger.NodeReport) string {
	if len(nodes) == 0 {
		if len(reqs) == 0 {
			return "no GPU node matches its nodeName and nodeSelector"
		}
		_, text := asked(reqs)
		return fmt.Sprintf("it requests %s and no GPU node matches its nodeName and nodeSelector", text)
	}
	var down []string
	for _, n := range nodes {
		if n.NotReady == "" {
			return ""
		}
		down = append(down, n.Name+" is "+n.NotReady)
	}
	return strings.Join(down, "; ") + ": bring the GPU node back (kubectl describe node NAME; on K3s, systemctl status k3s-agent on it)"
}

// neverFits says which request exceeds what every candidate node
// advertises in all; "" when a node could hold it once free.
func neverFits(reqs map[string]int64, nodes []*ledger.NodeReport) string {
	if len(nodes) == 0 {
		return ""
	}
	names, _ := asked(reqs)
	var out []string
	for _, name := range names {
		var most int64
		for _, n := range nodes {
			most = max(most, resourceOf(n, name).Allocatable)
		}
		if reqs[name] > most {
			out = append(out, fmt.Sprintf("it requests %d %s per pod and the most any of its GPU nodes advertises is %d: it can never start; lower the request, or give the GPU more time-slicing replicas (gpuslice config render --replicas N)",
				reqs[name], name, most))
		}
	}
	return strings.Join(out, "; ")
}

func resourceOf(n *ledger.NodeReport, name string) ledger.ResourceUsage {
	if i := slices.IndexFunc(n.Resources, func(r ledger.ResourceUsage) bool { return r.Name == name }); i >= 0 {
		return n.Resources[i]
	}
	return ledger.ResourceUsage{Name: name}
}

// shortOfShares describes the shortage when the Ready candidate nodes
// have room for fewer of s's pods than it starts, or returns "" when
// they have room (or it requests nothing).
func shortOfShares(s Subject, reqs map[string]int64, nodes []*ledger.NodeReport) string {
	if len(reqs) == 0 || len(nodes) == 0 {
		return ""
	}
	names, text := asked(reqs)
	want := int64(max(s.Pods, 1))
	var room int64
	for _, n := range nodes {
		room += podsFitting(n, names, reqs, s)
	}
	if room >= want {
		return ""
	}
	var free []string
	for _, n := range nodes {
		if short := nodeShortage(n, names, reqs, s); len(short) > 0 {
			free = append(free, n.Name+" "+strings.Join(short, " and "))
		}
	}
	if want > 1 {
		text = fmt.Sprintf("%s for each of %d pods (room for %d)", text, want, room)
	}
	return fmt.Sprintf("it requests %s; free: %s; free shares with `gpuslice release WORKLOAD -n NAMESPACE`, or wait for the arbiter to make room",
		text, strings.Join(free, ", "))
}

// freeFor is what n has free of resource for s: nothing on a NotReady
// node, and with the shares s's own pods hold when it replaces them.
func freeFor(n *ledger.NodeReport, resource string, s Subject) int64 {
	use := resourceOf(n, resource)
	free := max(use.Free, 0)
	if !s.Replaces || n.NotReady != "" {
		return free
	}
	for _, w := range n.Workloads {
		if w.Resource == resource && w.Kind == s.Workload.Kind && w.Namespace == s.Workload.Namespace && w.Name == s.Workload.Name {
			free += w.Shares
		}
	}
	return min(free, use.Allocatable)
}

// podsFitting is how many of s's pods n has room for.
func podsFitting(n *ledger.NodeReport, names []string, reqs map[string]int64, s Subject) int64 {
	fit := int64(-1)
	for _, name := range names {
		k := freeFor(n, name, s) / reqs[name]
		if fit < 0 || k < fit {
			fit = k
		}
	}
	return max(fit, 0)
}

// nodeShortage lists the requested resources n lacks, as "1 of 8" with
// the resource named when the pod requests several, and who holds them.
func nodeShortage(n *ledger.NodeReport, names []string, reqs map[string]int64, sub Subject) []string {
	var out []string
	for _, name := range names {
		free := freeFor(n, name, sub)
		if free >= reqs[name]*int64(max(sub.Pods, 1)) {
			continue
		}
		s := fmt.Sprintf("%d of %d", free, resourceOf(n, name).Allocatable)
		if len(names) > 1 {
			s += " " + name
		}
		switch h := holders(n, name); {
		case n.NotReady != "":
			s += " (node " + n.NotReady + ")"
		case h != "":
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

// Worst is the code to report among codes, by the same precedence as
// Decision.Code; CodeOK when all are.
func Worst(codes ...Code) Code {
	for _, c := range precedence {
		if slices.Contains(codes, c) {
			return c
		}
	}
	return CodeOK
}

// Overridable says whether break-glass may let a pod in despite c: what
// the gate refuses for by policy (a protected workload down, shares
// short), not what no admission changes (no node, a request no node holds).
func Overridable(c Code) bool { return c == CodeSharesShort || c == CodeProtectedUnhealthy }
