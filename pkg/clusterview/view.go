// Package clusterview is the cluster as the arbiter and the admission
// gate decide on it: every Deployment, StatefulSet and CronJob with a
// gpuslice policy, with its pods, the GPU nodes it is on or may land on, its
// release and lower records and its expected VRAM, beside the share and
// VRAM ledger. It is pure: Read computes on listed objects (filled by
// pkg/snapshot's informers), so it is table-testable without a cluster.
package clusterview

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/podstatus"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Cluster is what the arbiter reads from the API server: the ledger's
// input (its Jobs lead a Job's pods to their CronJob) plus the workloads
// and PriorityClasses.
type Cluster struct {
	ledger.Input
	Deployments  []appsv1.Deployment
	StatefulSets []appsv1.StatefulSet
	CronJobs     []batchv1.CronJob
	Classes      policy.PriorityClasses
}

// Workload is a Deployment, StatefulSet or CronJob with an arbitration
// policy, as seen now.
type Workload struct {
	Ref    workload.Ref  `json:"workload"`
	Policy policy.Policy `json:"policy"`
	// Ignored says which of its annotations the policy did not believe,
	// and why (policy.Trust.Apply).
	Ignored []string `json:"ignored,omitempty"`
	// Adjusted says where the policy differs from what the annotations
	// ask, because as asked it would fail, and why (lowerNeedsRecreate).
	Adjusted []string `json:"adjusted,omitempty"`
	// Annotations are the workload's own, where the arbiter's intent lives.
	Annotations map[string]string `json:"-"`
	// Replicas is spec.replicas; Ready the ready pods. A CronJob's
	// Replicas are the pods its running Jobs want: the parallelism of
	// each unfinished Job that is not suspended, at most the completions
	// it still lacks.
	Replicas int32 `json:"replicas"`
	Ready    int32 `json:"ready"`
	// Schedules says a CronJob is not suspended: it starts Jobs on its
	// schedule, so it may take the GPU although it has no pods now.
	Schedules bool `json:"schedules,omitempty"`
	// Pods are its pods that are not finished (a CronJob's: its Jobs').
	Pods []*corev1.Pod `json:"-"`
	// Nodes are the GPU nodes it is on or may land on: its pods' nodes,
	// the GPU nodes its unscheduled pods' nodeSelector matches (for a
	// CronJob that schedules, its Jobs' pod template's), and for a
	// released workload the node its release freed.
	Nodes []string `json:"nodes"`
	// Record is its release record, nil when not released.
	Record *workload.ReleaseRecord `json:"record,omitempty"`
	// Lowered is the arbiter's lower-memory intent, nil when none.
	Lowered *workload.LowerRecord `json:"lowered,omitempty"`
	// Memory is the VRAM one pod is expected to hold, nil when unknown.
	Memory *ledger.MemoryRange `json:"memory,omitempty"`
	// Template is the pod template, for ops that need it.
	Template *corev1.PodTemplateSpec `json:"-"`
	// RolledOut says the controller has finished its last rollout: every
	// pod runs the current template.
	RolledOut bool `json:"rolledOut"`
}

// Healthy says whether a protected workload serves: every desired replica
// has a pod that is Running and Ready. A workload scaled to zero is
// healthy (nobody wants it).
func (w *Workload) Healthy() (bool, string) {
	if w.Replicas == 0 {
		return true, ""
	}
	var running int32
	for _, p := range w.Pods {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	switch {
	case running < w.Replicas:
		return false, fmt.Sprintf("%d of %d pod(s) Running", running, w.Replicas)
	case w.Ready < w.Replicas:
		return false, fmt.Sprintf("%d of %d pod(s) Ready", w.Ready, w.Replicas)
	}
	return true, ""
}

// PodsGone says whether the workload holds no pod (after a scale to zero).
func (w *Workload) PodsGone() bool { return len(w.Pods) == 0 }

// Runs says whether the workload has or may start pods: replicas, or a
// CronJob that schedules Jobs.
func (w *Workload) Runs() bool { return w.Replicas > 0 || w.Schedules }

// Serving says whether every desired pod is Ready (after a restore).
func (w *Workload) Serving() bool { return w.Ready >= w.Replicas }

// OnNode says whether the workload is on, or may land on, node.
func (w *Workload) OnNode(node string) bool {
	for _, n := range w.Nodes {
		if n == node {
			return true
		}
	}
	return false
}

// Options are what reading the cluster needs.
type Options struct {
	Ledger ledger.Options
	// Zone is the time zone of active hours without their own.
	Zone *time.Location
	// Trust is what may protect a workload or raise its priority; nil
	// believes every annotation (policy.Trust.Apply).
	Trust *policy.Trust
}

// PolicyError is a workload whose annotations do not parse.
type PolicyError struct {
	Ref workload.Ref
	Err error
}

// View is the cluster as the arbiter decides on it.
type View struct {
	Workloads []*Workload
	// Invalid are workloads whose policy is wrong: skipped, and reported
	// so the controller can event them.
	Invalid []PolicyError
	// Ledger is the share and VRAM ledger of every GPU node.
	Ledger *ledger.Report
	// Owners finds the workload a pod belongs to.
	Owners ledger.Owners
}

// Find is the workload ref names, nil when it has no policy.
func (v *View) Find(ref workload.Ref) *Workload {
	for _, w := range v.Workloads {
		if w.Ref == ref {
			return w
		}
	}
	return nil
}

// Read finds every workload with a policy.
func Read(c *Cluster, opt Options) (*View, error) {
	report, err := ledger.Build(c.Input, opt.Ledger)
	if err != nil {
		return nil, err
	}
	est := ledger.NewEstimator(c.Input, opt.Ledger)
	owners := est.Owners()
	gpuNodes := gpuNodes(c.Nodes, report)
	podsOf := map[workload.Ref][]*corev1.Pod{}
	for i := range c.Pods {
		p := &c.Pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		kind, name := owners.Of(p)
		ref := workload.Ref{Kind: kind, Namespace: p.Namespace, Name: name}
		podsOf[ref] = append(podsOf[ref], p)
	}

	var out []*Workload
	var bad []PolicyError
	add := func(ref workload.Ref, ann map[string]string, tmpl *corev1.PodTemplateSpec, replicas *int32, rolledOut bool) *Workload {
		if !mayBeManaged(ann) && !opt.Trust.Configured(ref) {
			return nil
		}
		w, err := parseWorkload(ref, ann, tmpl, c.Classes, opt.Zone, opt.Trust)
		if err != nil {
			bad = append(bad, PolicyError{Ref: ref, Err: err})
			return nil
		}
		if replicas != nil {
			w.Replicas = *replicas
		}
		w.Pods, w.RolledOut = podsOf[ref], rolledOut
		out = append(out, w)
		return w
	}
	for i := range c.Deployments {
		d := &c.Deployments[i]
		if w := add(workload.Ref{Kind: workload.KindDeployment, Namespace: d.Namespace, Name: d.Name}, d.Annotations, &d.Spec.Template, d.Spec.Replicas, deploymentRolledOut(d)); w != nil {
			lowerNeedsRecreate(w, d)
		}
	}
	for i := range c.StatefulSets {
		s := &c.StatefulSets[i]
		add(workload.Ref{Kind: workload.KindStatefulSet, Namespace: s.Namespace, Name: s.Name}, s.Annotations, &s.Spec.Template, s.Spec.Replicas, statefulSetRolledOut(s))
	}
	jobPods := jobPodsByCronJob(c.Jobs)
	for i := range c.CronJobs {
		cj := &c.CronJobs[i]
		ref := workload.Ref{Kind: workload.KindCronJob, Namespace: cj.Namespace, Name: cj.Name}
		want := jobPods[ref]
		// Nothing rolls out: a Job runs the template it started with.
		if w := add(ref, cj.Annotations, &cj.Spec.JobTemplate.Spec.Template, &want, true); w != nil {
			w.Schedules = cj.Spec.Suspend == nil || !*cj.Spec.Suspend
			if w.Policy.Action == policy.ActionLowerMemory {
				out = out[:len(out)-1]
				bad = append(bad, PolicyError{Ref: ref, Err: fmt.Errorf("%s=%q: a CronJob is preempted by suspending it and its Jobs, not by lowering its memory; remove the annotation or set it to %q",
					workload.AnnotationPreemptAction, cj.Annotations[workload.AnnotationPreemptAction], policy.ActionScaleToZero)})
			}
		}
	}
	for _, w := range out {
		w.fill(est, gpuNodes, opt.Ledger)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.Qualified() < out[j].Ref.Qualified() })
	return &View{Workloads: out, Invalid: bad, Ledger: report, Owners: owners}, nil
}

// parseWorkload reads a workload's policy and the arbiter's records on it.
func parseWorkload(ref workload.Ref, ann map[string]string, tmpl *corev1.PodTemplateSpec, classes policy.PriorityClasses, zone *time.Location, trust *policy.Trust) (*Workload, error) {
	pol, err := policy.Parse(ann, tmpl.Spec.PriorityClassName, classes, zone)
	if err != nil {
		return nil, err
	}
	pol, ignored := trust.Apply(ref, pol, tmpl.Spec.PriorityClassName, classes)
	rec, err := workload.ParseReleaseRecord(ann)
	if err != nil {
		return nil, err
	}
	low, err := workload.ParseLowerRecord(ann)
	if err != nil {
		return nil, err
	}
	return &Workload{Ref: ref, Policy: pol, Ignored: ignored, Annotations: ann, Replicas: 1, Record: rec, Lowered: low, Template: tmpl}, nil
}

// mayBeManaged is a cheap look for any arbiter annotation, so unrelated
// workloads are never parsed (nor reported).
func mayBeManaged(ann map[string]string) bool {
	for _, k := range []string{workload.AnnotationProtected, workload.AnnotationPreemptible} {
		if _, ok := ann[k]; ok {
			return true
		}
	}
	return false
}

// jobPodsByCronJob is, per CronJob, the pods its running Jobs want (see
// Workload.Replicas).
func jobPodsByCronJob(jobs []batchv1.Job) map[workload.Ref]int32 {
	out := map[workload.Ref]int32{}
	for i := range jobs {
		j := &jobs[i]
		owner := metav1.GetControllerOfNoCopy(j)
		if owner == nil || owner.Kind != workload.KindCronJob || JobFinished(j) || j.Spec.Suspend != nil && *j.Spec.Suspend {
			continue
		}
		n := int32(1)
		if j.Spec.Parallelism != nil {
			n = *j.Spec.Parallelism
		}
		if j.Spec.Completions != nil {
			n = min(n, max(0, *j.Spec.Completions-j.Status.Succeeded))
		}
		out[workload.Ref{Kind: workload.KindCronJob, Namespace: j.Namespace, Name: owner.Name}] += n
	}
	return out
}

// JobFinished says whether a Job has completed or failed for good.
func JobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// fill works out the pods' readiness, the nodes and the expected memory.
func (w *Workload) fill(est *ledger.Estimator, gpuNodes []gpuNode, lopt ledger.Options) {
	// The template as a pod, so that a released workload has expected
	// memory too.
	pod := &corev1.Pod{ObjectMeta: w.Template.ObjectMeta, Spec: w.Template.Spec}
	pod.Namespace, pod.Name = w.Ref.Namespace, w.Ref.Name
	gpuPod := ledger.IsGPUPod(pod, lopt)
	nodes := map[string]bool{}
	if w.Schedules && gpuPod {
		for _, n := range selectable(&w.Template.Spec, gpuNodes) {
			nodes[n] = true
		}
	}
	for _, p := range w.Pods {
		if isReady(p) {
			w.Ready++
		}
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = true
			continue
		}
		for _, n := range selectable(&p.Spec, gpuNodes) {
			nodes[n] = true
		}
	}
	if w.Record != nil && w.Record.Node != "" {
		nodes[w.Record.Node] = true
	}
	if w.Lowered != nil && w.Lowered.Node != "" {
		nodes[w.Lowered.Node] = true
	}
	w.Nodes = slices.Sorted(maps.Keys(nodes))

	var gpuMem int64
	for _, n := range gpuNodes {
		if w.OnNode(n.Name) {
			gpuMem = n.report.GPUMemoryBytes
			break
		}
	}
	if gpuPod {
		w.Memory, _ = est.PodMemory(pod, gpuMem)
	}
}

func isReady(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podstatus.Ready(p)
}

// gpuNode is a node the ledger counts as a GPU node.
type gpuNode struct {
	*corev1.Node
	report *ledger.NodeReport
}

// gpuNodes are the nodes with any GPU resource.
func gpuNodes(nodes []corev1.Node, r *ledger.Report) []gpuNode {
	byName := map[string]*ledger.NodeReport{}
	for i := range r.Nodes {
		byName[r.Nodes[i].Name] = &r.Nodes[i]
	}
	var out []gpuNode
	for i := range nodes {
		if nr, ok := byName[nodes[i].Name]; ok {
			out = append(out, gpuNode{&nodes[i], nr})
		}
	}
	return out
}

// selectable are the GPU nodes an unscheduled pod's nodeSelector (and
// nodeName) allow. Affinity is not evaluated: a pod constrained only by
// affinity counts against every GPU node, the cautious reading.
func selectable(spec *corev1.PodSpec, nodes []gpuNode) []string {
	sel := labels.SelectorFromSet(spec.NodeSelector)
	var out []string
	for _, n := range nodes {
		if (spec.NodeName == "" || spec.NodeName == n.Name) && sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n.Name)
		}
	}
	return out
}

// deploymentRolledOut is kubectl rollout status's test: the controller saw
// the latest spec, and every pod is updated and available.
func deploymentRolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

func statefulSetRolledOut(s *appsv1.StatefulSet) bool {
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	st := s.Status
	return st.ObservedGeneration >= s.Generation && st.UpdatedReplicas == want && st.ReadyReplicas == want && st.CurrentRevision == st.UpdateRevision
}

// LoweredRolledOut says whether a lowered workload's pods run with the
// current phase's fraction: restarted at the phase's time, and the
// rollout finished.
func (w *Workload) LoweredRolledOut() bool { return w.phaseRestarted() && w.RolledOut }

// phaseRestarted says whether the pod template carries the restart of the
// lower record's current phase.
func (w *Workload) phaseRestarted() bool {
	return w.Template.Annotations[workload.AnnotationRestartedAt] == w.Lowered.PhaseRestart()
}

// LowerUnfinished says whether a lower-memory step was cut short (the
// arbiter stopped between its writes): the record is there, but the
// restart of its phase is not, or a finished restore left the record.
func (w *Workload) LowerUnfinished() bool {
	return w.Lowered != nil && w.Record == nil && (w.Lowered.Restoring || !w.phaseRestarted())
}

// Object is the Deployment, StatefulSet or CronJob ref names, nil when the cluster
// has none: what an Event about the workload is recorded on.
func (c *Cluster) Object(ref workload.Ref) runtime.Object {
	switch ref.Kind {
	case workload.KindDeployment:
		for i := range c.Deployments {
			if d := &c.Deployments[i]; d.Namespace == ref.Namespace && d.Name == ref.Name {
				return d
			}
		}
	case workload.KindStatefulSet:
		for i := range c.StatefulSets {
			if s := &c.StatefulSets[i]; s.Namespace == ref.Namespace && s.Name == ref.Name {
				return s
			}
		}
	case workload.KindCronJob:
		for i := range c.CronJobs {
			if cj := &c.CronJobs[i]; cj.Namespace == ref.Namespace && cj.Name == ref.Name {
				return cj
			}
		}
	}
	return nil
}
