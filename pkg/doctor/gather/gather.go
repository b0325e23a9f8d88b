// Package gather collects, from a live cluster, the evidence package
// doctor judges: the ledger's objects (through package snapshot), the
// workloads and their pods, events, RuntimeClasses, log tails, and the
// webhook's registration, pods, endpoints, TLS handshake and a dry-run
// admission. It is doctor's only Kubernetes I/O.
package gather

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/suggest"
	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Defaults of Options.
const (
	DefaultTailLines   = 200
	DefaultDialTimeout = 3 * time.Second
	// DefaultWebhookSelector is the label gpuslice's manifests put on the
	// webhook's pods; LegacyWebhookSelector is the seed's (kubectl logs -n
	// gpu-system -l app=gpu-webhook).
	DefaultWebhookSelector = "app.kubernetes.io/name=gpuslice"
	LegacyWebhookSelector  = "app=gpu-webhook"
)

// Options say what to examine.
type Options struct {
	// Target is the workload asked about; nil means every GPU workload.
	Target *doctor.Target
	// Namespace is the target's namespace; without a target it limits the
	// workloads listed ("" means all namespaces).
	Namespace string
	// WebhookConfig names the MutatingWebhookConfiguration
	// (registration.DefaultName when empty); WebhookNamespace and
	// WebhookSelector say where its pods are when its clientConfig does not
	// name a Service (registration.DefaultNamespace; the Service's
	// selector, else DefaultWebhookSelector or LegacyWebhookSelector).
	WebhookConfig, WebhookNamespace, WebhookSelector string
	// ProbeNamespace is where the dry-run pod is admitted; empty means the
	// target's namespace, -n, the first annotated workload's, or default.
	ProbeNamespace string
	// Injector has the webhook's profiles; nil means the built-in ones.
	Injector *inject.Config
	// Logs reads log tails; nil means KubeLogs through the API server.
	Logs        LogReader
	TailLines   int
	DialTimeout time.Duration
	// Dial opens the connection for the TLS handshake; nil means a
	// net.Dialer. Tests use it to stand where pod addresses are routable.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	Now  func() time.Time
}

func (o *Options) defaults(cs kubernetes.Interface) {
	if o.WebhookConfig == "" {
		o.WebhookConfig = registration.DefaultName
	}
	if o.WebhookNamespace == "" {
		o.WebhookNamespace = registration.DefaultNamespace
	}
	if o.Logs == nil {
		o.Logs = KubeLogs{Client: cs}
	}
	if o.TailLines <= 0 {
		o.TailLines = DefaultTailLines
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
}

// takeLedger lists the ledger's objects and builds it. They are listed
// cluster-wide: a node's free shares depend on every pod bound to it.
func takeLedger(ctx context.Context, cs kubernetes.Interface) (ledger.Input, *ledger.Report, error) {
	in, err := snapshot.Take(ctx, cs, ledger.Options{})
	if err != nil {
		return in, nil, err
	}
	report, err := ledger.Build(in, ledger.Options{})
	return in, report, err
}

// Collect gathers the evidence. It fails only when the cluster cannot be
// read at all or the target does not exist; what a check cannot read
// becomes part of its evidence.
func Collect(ctx context.Context, cs kubernetes.Interface, o Options) (*doctor.Evidence, error) {
	o.defaults(cs)
	in, report, err := takeLedger(ctx, cs)
	if err != nil {
		return nil, err
	}
	ev := &doctor.Evidence{Now: o.Now(), Nodes: in.Nodes, Ledger: report, ConfigMaps: in.ConfigMaps, Injector: o.Injector}
	if o.Target != nil {
		ev.Target = o.Target.String()
		w, err := targetWorkload(ctx, cs, &in, *o.Target, o.Namespace)
		if err != nil {
			return nil, err
		}
		ev.Workloads = []doctor.WorkloadEvidence{*w}
	} else if ev.Workloads, err = gpuWorkloads(ctx, cs, &in, o.Namespace); err != nil {
		return nil, err
	}
	if err := addEvents(ctx, cs, ev.Workloads); err != nil {
		return nil, err
	}
	for i := range ev.Workloads {
		for j := range ev.Workloads[i].Pods {
			p := &ev.Workloads[i].Pods[j]
			p.Logs = readLogs(ctx, o.Logs, p.Pod, o.TailLines)
		}
	}
	ev.RuntimeClasses = runtimeClasses(ctx, cs)
	if o.Target == nil {
		if ev.DevicePlugin, err = collectDevicePlugin(ctx, cs, in.Pods); err != nil {
			return nil, err
		}
	}
	used := slices.ContainsFunc(ev.Workloads, func(w doctor.WorkloadEvidence) bool { return usesWebhook(&w) })
	if o.Target == nil || used {
		ev.Webhook = collectWebhook(ctx, cs, &o, probeNamespace(&o, ev.Workloads))
		ev.Webhook.Used = used
	}
	return ev, nil
}

// usesWebhook says whether a workload's pods go through the webhook.
func usesWebhook(w *doctor.WorkloadEvidence) bool {
	ann := w.PodAnnotations()
	_, profiles := ann[workload.AnnotationProfiles]
	_, shares := ann[workload.AnnotationShares]
	return profiles || shares
}

func probeNamespace(o *Options, workloads []doctor.WorkloadEvidence) string {
	if o.ProbeNamespace != "" {
		return o.ProbeNamespace
	}
	if o.Namespace != "" {
		return o.Namespace
	}
	for i := range workloads {
		if usesWebhook(&workloads[i]) {
			return workloads[i].Namespace
		}
	}
	return metav1.NamespaceDefault
}

// targetWorkload reads the named workload and its pods.
func targetWorkload(ctx context.Context, cs kubernetes.Interface, in *ledger.Input, t doctor.Target, ns string) (*doctor.WorkloadEvidence, error) {
	var (
		w   *doctor.WorkloadEvidence
		err error
	)
	switch t.Kind {
	case doctor.KindDeployment:
		var d *appsv1.Deployment
		if d, err = cs.AppsV1().Deployments(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
			w = deploymentWorkload(d, in)
		}
	case doctor.KindStatefulSet:
		var s *appsv1.StatefulSet
		if s, err = cs.AppsV1().StatefulSets(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
			w = statefulSetWorkload(s, in)
		}
	case doctor.KindDaemonSet:
		var d *appsv1.DaemonSet
		if d, err = cs.AppsV1().DaemonSets(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
			w = daemonSetWorkload(d, in)
		}
	case doctor.KindCronJob:
		var cj *batchv1.CronJob
		if cj, err = cs.BatchV1().CronJobs(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
			w = cronJobWorkload(cj, in)
		}
	case doctor.KindPod:
		var p *corev1.Pod
		if p, err = cs.CoreV1().Pods(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
			w = &doctor.WorkloadEvidence{Kind: doctor.KindPod, Namespace: ns, Name: p.Name, Pods: []doctor.PodEvidence{{Pod: p}}}
		}
	default:
		return nil, fmt.Errorf("doctor cannot check a %s", t.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, notFound(ctx, cs, in, t, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s in namespace %s: %w", t, ns, err)
	}
	return w, nil
}

// notFound names what exists instead, with the nearest name.
func notFound(ctx context.Context, cs kubernetes.Interface, in *ledger.Input, t doctor.Target, ns string) error {
	var names []string
	if t.Kind == doctor.KindPod {
		for _, p := range in.Pods {
			if p.Namespace == ns {
				names = append(names, p.Name)
			}
		}
	} else if ws, err := listControllers(ctx, cs, in, t.Kind, ns); err == nil {
		for _, w := range ws {
			names = append(names, w.Name)
		}
	}
	msg := fmt.Sprintf("%s not found in namespace %s", t, ns)
	if best, _ := suggest.Closest(t.Name, names); best != "" {
		return fmt.Errorf("%s; did you mean %s/%s?", msg, strings.ToLower(t.Kind), best)
	}
	if len(names) > 0 {
		return fmt.Errorf("%s; there: %s (or pass -n)", msg, strings.Join(names, ", "))
	}
	return fmt.Errorf("%s: it has no %ss; pass -n NAMESPACE", msg, strings.ToLower(t.Kind))
}

// controllerKinds are the controllers doctor finds by their pod template.
var controllerKinds = []string{doctor.KindDeployment, doctor.KindStatefulSet, doctor.KindDaemonSet}

// listControllers lists a namespace's Deployments, StatefulSets or
// DaemonSets ("" for all namespaces) as workloads with their pods.
func listControllers(ctx context.Context, cs kubernetes.Interface, in *ledger.Input, kind, ns string) ([]doctor.WorkloadEvidence, error) {
	var out []doctor.WorkloadEvidence
	var err error
	switch kind {
	case doctor.KindDeployment:
		var l *appsv1.DeploymentList
		if l, err = cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				out = append(out, *deploymentWorkload(&l.Items[i], in))
			}
		}
	case doctor.KindStatefulSet:
		var l *appsv1.StatefulSetList
		if l, err = cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				out = append(out, *statefulSetWorkload(&l.Items[i], in))
			}
		}
	case doctor.KindDaemonSet:
		var l *appsv1.DaemonSetList
		if l, err = cs.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				out = append(out, *daemonSetWorkload(&l.Items[i], in))
			}
		}
	case doctor.KindCronJob:
		var l *batchv1.CronJobList
		if l, err = cs.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				out = append(out, *cronJobWorkload(&l.Items[i], in))
			}
		}
	}
	if err != nil {
		return nil, listErr(strings.ToLower(kind)+"s", ns, err)
	}
	return out, nil
}

// gpuWorkloads finds every workload whose pods use the GPU: Deployments,
// StatefulSets and DaemonSets by their template (so that one whose pods
// cannot be created is found too), then the GPU pods left, grouped by
// their controller or on their own.
func gpuWorkloads(ctx context.Context, cs kubernetes.Interface, in *ledger.Input, ns string) ([]doctor.WorkloadEvidence, error) {
	var out []doctor.WorkloadEvidence
	for _, kind := range controllerKinds {
		ws, err := listControllers(ctx, cs, in, kind, ns)
		if err != nil {
			return nil, err
		}
		for _, w := range ws {
			if gpuTemplate(w.Template) {
				out = append(out, w)
			}
		}
	}
	claimed := map[types.UID]bool{}
	for _, w := range out {
		for _, p := range w.Pods {
			claimed[p.Pod.UID] = true
		}
	}
	others := map[string]*doctor.WorkloadEvidence{}
	var order []string
	for i := range in.Pods {
		p := &in.Pods[i]
		if claimed[p.UID] || (ns != "" && p.Namespace != ns) || !ledger.IsGPUPod(p, ledger.Options{}) ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		kind, name := doctor.KindPod, p.Name
		if ref := metav1.GetControllerOf(p); ref != nil {
			kind, name = ref.Kind, ref.Name
		}
		key := p.Namespace + "/" + kind + "/" + name
		if others[key] == nil {
			others[key] = &doctor.WorkloadEvidence{Kind: kind, Namespace: p.Namespace, Name: name}
			order = append(order, key)
		}
		others[key].Pods = append(others[key].Pods, doctor.PodEvidence{Pod: p})
	}
	for _, key := range order {
		out = append(out, *others[key])
	}
	return out, nil
}

func listErr(resource, ns string, err error) error {
	where := "in all namespaces"
	if ns != "" {
		where = "in namespace " + ns
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("listing %s %s is forbidden: %w; grant list on %s, or name one workload as KIND/NAME", resource, where, err, resource)
	}
	return fmt.Errorf("listing %s %s: %w", resource, where, err)
}

// gpuTemplate says whether pods made from t use the GPU, as the ledger
// decides for pods, or ask the webhook for shares.
func gpuTemplate(t *corev1.PodTemplateSpec) bool {
	pod := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	_, shares := t.Annotations[workload.AnnotationShares]
	return shares || ledger.IsGPUPod(pod, ledger.Options{})
}

func deploymentWorkload(d *appsv1.Deployment, in *ledger.Input) *doctor.WorkloadEvidence {
	w := &doctor.WorkloadEvidence{
		Kind: doctor.KindDeployment, Namespace: d.Namespace, Name: d.Name,
		Annotations: d.Annotations, Template: &d.Spec.Template, Desired: replicas(d.Spec.Replicas),
	}
	// Pods belong to the Deployment through its ReplicaSets.
	owned := map[types.UID]bool{}
	var sets []*appsv1.ReplicaSet
	for i := range in.ReplicaSets {
		rs := &in.ReplicaSets[i]
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == d.UID {
			owned[rs.UID] = true
			sets = append(sets, rs)
		}
	}
	w.Pods = podsOwnedBy(in.Pods, owned)
	// The newest ReplicaSet is the one creating pods; its ReplicaFailure
	// condition carries the admission error (the webhook's, for one).
	slices.SortFunc(sets, func(a, b *appsv1.ReplicaSet) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for _, rs := range sets {
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				w.CreateFailures = append(w.CreateFailures, fmt.Sprintf("ReplicaSet %s: %s", rs.Name, c.Message))
			}
		}
	}
	return w
}

func statefulSetWorkload(s *appsv1.StatefulSet, in *ledger.Input) *doctor.WorkloadEvidence {
	return &doctor.WorkloadEvidence{
		Kind: doctor.KindStatefulSet, Namespace: s.Namespace, Name: s.Name,
		Annotations: s.Annotations, Template: &s.Spec.Template, Desired: replicas(s.Spec.Replicas),
		Pods: podsOwnedBy(in.Pods, map[types.UID]bool{s.UID: true}),
	}
}

func daemonSetWorkload(d *appsv1.DaemonSet, in *ledger.Input) *doctor.WorkloadEvidence {
	desired := d.Status.DesiredNumberScheduled
	return &doctor.WorkloadEvidence{
		Kind: doctor.KindDaemonSet, Namespace: d.Namespace, Name: d.Name,
		Annotations: d.Annotations, Template: &d.Spec.Template, Desired: &desired,
		Pods: podsOwnedBy(in.Pods, map[types.UID]bool{d.UID: true}),
	}
}

func replicas(r *int32) *int32 {
	n := int32(1) // the API's default
	if r != nil {
		n = *r
	}
	return &n
}

// cronJobWorkload is a CronJob with the pods of its Jobs. How many pods
// it wants is left unknown: its Jobs come and go with the schedule.
func cronJobWorkload(cj *batchv1.CronJob, in *ledger.Input) *doctor.WorkloadEvidence {
	w := &doctor.WorkloadEvidence{
		Kind: doctor.KindCronJob, Namespace: cj.Namespace, Name: cj.Name,
		Annotations: cj.Annotations, Template: &cj.Spec.JobTemplate.Spec.Template,
	}
	jobs := map[types.UID]bool{}
	for i := range in.Jobs {
		if ref := metav1.GetControllerOf(&in.Jobs[i]); ref != nil && ref.UID == cj.UID {
			jobs[in.Jobs[i].UID] = true
		}
	}
	w.Pods = podsOwnedBy(in.Pods, jobs)
	return w
}

func podsOwnedBy(pods []corev1.Pod, owners map[types.UID]bool) []doctor.PodEvidence {
	var out []doctor.PodEvidence
	for i := range pods {
		if ref := metav1.GetControllerOf(&pods[i]); ref != nil && owners[ref.UID] {
			out = append(out, doctor.PodEvidence{Pod: &pods[i]})
		}
	}
	slices.SortFunc(out, func(a, b doctor.PodEvidence) int { return cmp.Compare(a.Pod.Name, b.Pod.Name) })
	return out
}

// addEvents attaches to each pod its events, and to each controller its
// FailedCreate events, newest first. core/v1 lists the events the
// scheduler writes through events.k8s.io/v1 as well.
func addEvents(ctx context.Context, cs kubernetes.Interface, workloads []doctor.WorkloadEvidence) error {
	byObject := map[string][]doctor.Event{} // namespace/kind/name
	listed := map[string]bool{}
	for _, w := range workloads {
		if listed[w.Namespace] {
			continue
		}
		listed[w.Namespace] = true
		list, err := cs.CoreV1().Events(w.Namespace).List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			continue // the checks fall back on the pods' conditions
		}
		if err != nil {
			return fmt.Errorf("listing events in namespace %s: %w", w.Namespace, err)
		}
		for i := range list.Items {
			e := &list.Items[i]
			key := e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name
			byObject[key] = append(byObject[key], flatten(e))
		}
	}
	for key := range byObject {
		slices.SortStableFunc(byObject[key], func(a, b doctor.Event) int { return b.Last.Compare(a.Last) })
	}
	for i := range workloads {
		w := &workloads[i]
		for _, e := range byObject[w.Namespace+"/"+w.Kind+"/"+w.Name] {
			if e.Reason == "FailedCreate" {
				w.CreateFailures = append(w.CreateFailures, e.Message)
			}
		}
		for j := range w.Pods {
			p := &w.Pods[j]
			p.Events = byObject[p.Pod.Namespace+"/Pod/"+p.Pod.Name]
		}
	}
	return nil
}

// flatten reads an event whichever API wrote it: events.k8s.io/v1 fills
// eventTime and series, core/v1 lastTimestamp and count.
func flatten(e *corev1.Event) doctor.Event {
	out := doctor.Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count, Last: e.LastTimestamp.Time}
	if e.EventTime.After(out.Last) {
		out.Last = e.EventTime.Time
	}
	if s := e.Series; s != nil {
		out.Count = max(out.Count, s.Count)
		if s.LastObservedTime.After(out.Last) {
			out.Last = s.LastObservedTime.Time
		}
	}
	return out
}

func runtimeClasses(ctx context.Context, cs kubernetes.Interface) doctor.RuntimeClasses {
	list, err := cs.NodeV1().RuntimeClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return doctor.RuntimeClasses{Err: err.Error()}
	}
	rcs := doctor.RuntimeClasses{Handlers: map[string]string{}}
	for _, rc := range list.Items {
		rcs.Handlers[rc.Name] = rc.Handler
	}
	return rcs
}
