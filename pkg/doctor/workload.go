package doctor

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// shareRequests is a pod's effective request of each GPU resource, as the
// ledger counts it (as the scheduler does, init containers included). A
// template asking the webhook for shares with gpu-shares gets them at
// admission, so they count too.
func shareRequests(pod *corev1.Pod) map[string]int64 {
	out := ledger.PodRequests(pod, ledger.Options{})
	if len(out) == 0 {
		if n, err := strconv.ParseInt(pod.Annotations[workload.AnnotationShares], 10, 64); err == nil && n > 0 {
			out[workload.SharedResource] = n
		}
	}
	return out
}

// JudgeShares judges the seed's "Not enough GPU shares available (need 2
// free)": the workload's request per pod against the free shares of the
// GPU nodes it may run on, naming who holds the rest.
func JudgeShares(w *WorkloadEvidence, r *ledger.Report, nodes []corev1.Node) Result {
	res := Result{Check: CheckShares, Verdict: OK}
	pod := w.specPod()
	reqs := shareRequests(pod)
	if len(reqs) == 0 {
		res.Evidence = "no GPU share request (webhook method): its GPU time is not accounted"
		return res
	}
	live := w.livePods()
	pending := 0
	for _, p := range live {
		if p.Spec.NodeName == "" {
			pending++
		}
	}
	var evidence, remedies []string
	for _, name := range slices.Sorted(maps.Keys(reqs)) {
		q := reqs[name]
		if len(live) > 0 && pending == 0 {
			evidence = append(evidence, holdsEvidence(live, r, name, q))
			continue
		}
		v, ev, remedy := judgeFree(w, pod, r, nodes, name, q, pending)
		if v.worse(res.Verdict) {
			res.Verdict = v
		}
		evidence = append(evidence, ev)
		if remedy != "" {
			remedies = append(remedies, remedy)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(reqs)) {
		if q := reqs[name]; q > 1 && timeSliced(r, name) {
			evidence = append(evidence, fmt.Sprintf("note: %d shares are %d places in the scheduler, not more GPU time: time-slicing gives every process an equal slice; "+
				"the device plugin's failRequestsGreaterThanOne: true refuses such requests (docs/status.md)", q, q))
		}
	}
	res.Evidence = strings.Join(evidence, "; ")
	res.Remedy = strings.Join(remedies, "; ")
	return res
}

// timeSliced says whether a node hands out resource as time-slicing
// replicas: more than one replica per GPU, or the renamed ".shared" name.
func timeSliced(r *ledger.Report, resource string) bool {
	if strings.HasSuffix(resource, ".shared") {
		return true
	}
	for _, n := range r.Nodes {
		if n.GPUReplicas > 1 && usage(&n, resource) != nil {
			return true
		}
	}
	return false
}

// holdsEvidence is a scheduled workload's line: what it holds and what is
// left on its nodes.
func holdsEvidence(live []*corev1.Pod, r *ledger.Report, resource string, q int64) string {
	var parts []string
	count := map[string]int{}
	var order []string
	for _, p := range live {
		if count[p.Spec.NodeName] == 0 {
			order = append(order, p.Spec.NodeName)
		}
		count[p.Spec.NodeName]++
	}
	for _, node := range order {
		s := fmt.Sprintf("holds %d %s on %s", q*int64(count[node]), resource, node)
		if n := nodeReport(r, node); usage(n, resource) != nil {
			s += " (" + freeOn(n, usage(n, resource)) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// judgeFree compares an unscheduled workload's request with the free
// shares of its candidate nodes.
func judgeFree(w *WorkloadEvidence, pod *corev1.Pod, r *ledger.Report, nodes []corev1.Node, resource string, q int64, pending int) (Verdict, string, string) {
	candidates := candidateNodes(pod, nodes, r)
	if len(candidates) == 0 {
		candidates = gpuNodes(r, resource) // placement reports the mismatch
	}
	if len(candidates) == 0 {
		return Fail, fmt.Sprintf("needs %d %s per pod; no node advertises %s", q, resource, resource),
			"check the resource name against the node (kubectl describe node <gpu-node> | grep nvidia.com) and that the NVIDIA device plugin runs there"
	}
	var best *ledger.NodeReport
	var bestUsage *ledger.ResourceUsage
	var free []string
	for _, name := range candidates {
		n := nodeReport(r, name)
		u := usage(n, resource)
		if u == nil {
			continue
		}
		free = append(free, name+" has "+freeOn(n, u))
		if bestUsage == nil || u.Free > bestUsage.Free {
			best, bestUsage = n, u
		}
	}
	if bestUsage == nil {
		return Fail, fmt.Sprintf("needs %d %s per pod; candidate node(s) %s do not advertise it", q, resource, strings.Join(candidates, ", ")), ""
	}
	need := fmt.Sprintf("needs %d %s per pod", q, resource)
	if bestUsage.Free >= q {
		ev := need + "; " + strings.Join(free, ", ")
		if pending > 0 {
			ev += fmt.Sprintf("; %d pod(s) still pending for another reason (see scheduling)", pending)
		}
		return OK, ev, ""
	}
	verdict := Fail
	if pending == 0 {
		verdict = Warn // no pod waits yet (none created): it will not fit when one is
	}
	if bestUsage.Allocatable < q {
		return Fail, fmt.Sprintf("%s but %s advertises only %d in all: it can never be scheduled", need, best.Name, bestUsage.Allocatable),
			fmt.Sprintf("lower the request to at most %d, or give the GPU more time-slicing replicas (gpuslice config render --replicas N)", bestUsage.Allocatable)
	}
	if best.NotReady != "" {
		// The best candidate is NotReady, so every candidate is.
		return verdict, fmt.Sprintf("%s; %s", need, strings.Join(free, ", ")),
			fmt.Sprintf("bring %s back (kubectl describe node %s; on K3s: systemctl status k3s-agent there); a NotReady node takes no pods", best.Name, best.Name)
	}
	ev := fmt.Sprintf("%s; %s, held by %s", need, strings.Join(free, ", "), holders(best, resource, w))
	return verdict, ev, freeRemedy(best, bestUsage, resource, q, w)
}

// freeOn is "2 of 8 free", and why none are when the node is NotReady.
func freeOn(n *ledger.NodeReport, u *ledger.ResourceUsage) string {
	s := fmt.Sprintf("%d of %d free", u.Free, u.Allocatable)
	if n.NotReady != "" {
		s += ", node " + n.NotReady
	}
	return s
}

// holders lists who holds a node's shares of resource, largest first:
// "ai/filler 4, ai/whisper 2".
func holders(n *ledger.NodeReport, resource string, self *WorkloadEvidence) string {
	hs := sortedHolders(n, resource, self)
	if len(hs) == 0 {
		return "no workload"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = fmt.Sprintf("%s/%s %d", h.Namespace, h.Name, h.Shares)
	}
	return strings.Join(parts, ", ")
}

func sortedHolders(n *ledger.NodeReport, resource string, self *WorkloadEvidence) []ledger.Workload {
	var hs []ledger.Workload
	for _, wl := range n.Workloads {
		if wl.Resource == resource && wl.Shares > 0 && !(wl.Namespace == self.Namespace && wl.Kind == self.Kind && wl.Name == self.Name) {
			hs = append(hs, wl)
		}
	}
	slices.SortStableFunc(hs, func(a, b ledger.Workload) int {
		return cmp.Or(cmp.Compare(b.Shares, a.Shares), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return hs
}

// freeRemedy says how many shares to free and the smallest single holder
// that frees enough, as a command.
func freeRemedy(n *ledger.NodeReport, u *ledger.ResourceUsage, resource string, q int64, self *WorkloadEvidence) string {
	deficit := q - u.Free
	parts := []string{fmt.Sprintf("free %d more %s on %s", deficit, resource, n.Name)}
	hs := sortedHolders(n, resource, self)
	for i := len(hs) - 1; i >= 0; i-- { // smallest first
		if hs[i].Shares >= deficit {
			parts = append(parts, fmt.Sprintf("e.g. %s (frees %d)", scaleDownCommand(hs[i]), hs[i].Shares))
			break
		}
	}
	parts = append(parts, fmt.Sprintf("or lower this workload's request (%s: %d)", resource, q))
	if n.GPUCount > 0 {
		replicas := (u.Allocatable + deficit + int64(n.GPUCount) - 1) / int64(n.GPUCount)
		parts = append(parts, fmt.Sprintf("or raise the GPU's time-slicing replicas (gpuslice config render --replicas %d)", replicas))
	}
	return strings.Join(parts, ", ")
}

func scaleDownCommand(wl ledger.Workload) string {
	if wl.Kind == KindPod {
		return fmt.Sprintf("kubectl delete pod -n %s %s", wl.Namespace, wl.Name)
	}
	return fmt.Sprintf("kubectl scale %s -n %s %s --replicas=0", strings.ToLower(wl.Kind), wl.Namespace, wl.Name)
}

func usage(n *ledger.NodeReport, resource string) *ledger.ResourceUsage {
	if n == nil {
		return nil
	}
	for i := range n.Resources {
		if n.Resources[i].Name == resource {
			return &n.Resources[i]
		}
	}
	return nil
}

// JudgeWorkloadPods judges whether the controller has its pods: with the
// webhook down (failurePolicy Fail) a Deployment has none, and the reason is
// only on its ReplicaSet.
func JudgeWorkloadPods(w *WorkloadEvidence) Result {
	res := Result{Check: CheckPods, Object: strings.ToLower(w.Kind) + "/" + w.Name}
	live := len(w.livePods())
	switch {
	case w.Desired != nil && *w.Desired == 0:
		res.Verdict = Warn
		res.Evidence = "scaled to 0 replicas: no pod, no GPU use"
		res.Remedy = fmt.Sprintf("scale it back when wanted: kubectl scale %s -n %s %s --replicas=1", strings.ToLower(w.Kind), w.Namespace, w.Name)
	case w.Desired != nil && live < int(*w.Desired) && len(w.CreateFailures) > 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("%d of %d pod(s) exist; creating pods fails: %s", live, *w.Desired, w.CreateFailures[0])
		res.Remedy = createFailureRemedy(w.CreateFailures[0])
	case w.Desired != nil && live < int(*w.Desired):
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("%d of %d pod(s) exist and no FailedCreate was recorded: a rollout in progress?", live, *w.Desired)
		res.Remedy = fmt.Sprintf("kubectl describe %s -n %s %s", strings.ToLower(w.Kind), w.Namespace, w.Name)
	default:
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("%d pod(s): %s", live, podPhases(w))
	}
	return res
}

// createFailureRemedy turns the controller's FailedCreate message into the
// fix.
func createFailureRemedy(msg string) string {
	switch {
	case strings.Contains(msg, "failed calling webhook"):
		return "the device-injection webhook cannot be reached and failurePolicy Fail refuses GPU pods: fix the webhook (see the webhook-* checks under Cluster); the controller retries on its own"
	case strings.Contains(msg, "denied the request"):
		return "the webhook refused the pod template; its message above says what to change in the template's annotations or volumes"
	case strings.Contains(msg, "RuntimeClass"):
		return "create the RuntimeClass (apiVersion node.k8s.io/v1, kind RuntimeClass, name nvidia, handler nvidia) or fix runtimeClassName"
	case strings.Contains(msg, "exceeded quota"):
		return "raise the namespace's ResourceQuota or lower the template's requests"
	}
	return "fix what the message says in the pod template, then watch kubectl get events"
}

func podPhases(w *WorkloadEvidence) string {
	if len(w.Pods) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(w.Pods))
	for _, p := range w.Pods {
		s := p.Pod.Name + " " + string(p.Pod.Status.Phase)
		if p.Pod.Spec.NodeName != "" {
			s += " on " + p.Pod.Spec.NodeName
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// JudgeScheduling judges an unbound pod by what the scheduler said: the
// FailedScheduling event (e.g. "Insufficient nvidia.com/gpu.shared") or the
// PodScheduled condition when the events have expired.
func JudgeScheduling(in *PodInput) Result {
	pod := in.Pod
	res := Result{Check: CheckScheduling, Object: "pod/" + pod.Name}
	if pod.Spec.NodeName != "" {
		res.Verdict, res.Evidence = OK, "scheduled to "+pod.Spec.NodeName
		return res
	}
	for _, e := range in.Events {
		if e.Reason == "FailedScheduling" {
			res.Verdict = Fail
			res.Evidence = fmt.Sprintf("FailedScheduling (x%d): %s", max(e.Count, 1), strings.TrimSpace(e.Message))
			res.Remedy = schedulingRemedy(e.Message)
			return res
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
			res.Verdict = Fail
			res.Evidence = fmt.Sprintf("PodScheduled=False (%s): %s", c.Reason, c.Message)
			res.Remedy = schedulingRemedy(c.Message)
			return res
		}
	}
	res.Verdict = Warn
	res.Evidence = "not scheduled yet and the scheduler has said nothing"
	res.Remedy = "check that the scheduler runs"
	if s := pod.Spec.SchedulerName; s != "" && s != corev1.DefaultSchedulerName {
		res.Remedy += fmt.Sprintf(" (the pod asks for schedulerName %q)", s)
	}
	return res
}

// schedulingRemedy reads the scheduler's reasons ("0/1 nodes are available:
// 1 Insufficient nvidia.com/gpu.shared.") and names the fix for each.
func schedulingRemedy(msg string) string {
	var fixes []string
	if strings.Contains(msg, "Insufficient nvidia.com/") || strings.Contains(msg, "Insufficient ") {
		fixes = append(fixes, "free GPU shares or lower the request (see gpu-shares)")
	}
	if strings.Contains(msg, "didn't match Pod's node affinity/selector") {
		fixes = append(fixes, "fix the nodeSelector or node affinity (see placement)")
	}
	if strings.Contains(msg, "untolerated taint") {
		fixes = append(fixes, "add a toleration for the node's taint, or remove the taint (kubectl describe node | grep Taints)")
	}
	if strings.Contains(msg, "unschedulable") {
		fixes = append(fixes, "the node is cordoned: kubectl uncordon <node>")
	}
	if len(fixes) == 0 {
		return "read the scheduler's reasons above: kubectl describe pod"
	}
	return strings.Join(fixes, "; ")
}
