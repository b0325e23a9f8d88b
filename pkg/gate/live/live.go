// Package live runs the admission gate (package gate) for the webhook
// over the live cluster: the arbiter's informers keep what the gate reads
// in memory, so an admission costs no API call, and a pod that break-glass
// lets in is recorded as an Event on its workload.
package live

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/gate"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/webhook"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// ReasonBreakGlass is the Event recorded on a workload whose pod the
// break-glass annotation let past the gate.
const ReasonBreakGlass = workload.ReasonBreakGlass

// DefaultOwnerWait bounds the wait for the informers to see a new pod's
// ReplicaSet and Deployment; well inside the registration's 5 s timeout.
const DefaultOwnerWait = 2 * time.Second

// Options configure the gate.
type Options struct {
	// Client watches the cluster and records break-glass Events.
	Client kubernetes.Interface
	// Ledger says which resources are GPU resources.
	Ledger ledger.Options
	// Trust says who may be protected (the arbiter's --protected and
	// --trusted-namespace); nil believes every workload's annotations.
	Trust *policy.Trust
	// OwnerWait is how long a pod may wait for the informers to see the
	// ReplicaSet and Deployment created just before it; DefaultOwnerWait
	// when 0.
	OwnerWait time.Duration
}

// source is what the gate reads: snapshot.Informers, or a fixed cluster
// in tests.
type source interface {
	Synced() (bool, string)
	Cluster() (*clusterview.Cluster, error)
}

// Gate implements webhook.Gate.
type Gate struct {
	opts      Options
	source    source
	informers *snapshot.Informers
	events    record.EventBroadcaster
	recorder  record.EventRecorder

	// changes counts the informers' events. The cluster is copied out of
	// the informers and read into a view only when it moved since the last
	// copy, not per admission: a burst of pods is decided on one view.
	changes atomic.Uint64
	mu      sync.Mutex
	last    *cachedView
}

// cachedView is the cluster as of changes, and the view read from it;
// both are only read once built, by any number of admissions at once.
type cachedView struct {
	changes uint64
	cluster *clusterview.Cluster
	view    *clusterview.View
}

var _ webhook.Gate = (*Gate)(nil)

// New returns a gate; Start lists the cluster.
func New(o Options) *Gate {
	b := record.NewBroadcaster()
	g := &Gate{opts: o, events: b, recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gpuslice-webhook"})}
	g.informers = snapshot.NewInformers(o.Client, func() { g.changes.Add(1) })
	g.source = g.informers
	return g
}

// current is the cluster and its view as the informers hold them now,
// copied again only if an informer saw a change since the last copy. The
// count is read before the copy: a change the copy missed has not been
// counted yet, so the next call copies again.
func (g *Gate) current() (*clusterview.Cluster, *clusterview.View, error) {
	changes := g.changes.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last != nil && g.last.changes == changes {
		return g.last.cluster, g.last.view, nil
	}
	c, err := g.source.Cluster()
	if err != nil {
		return nil, nil, err
	}
	v, err := clusterview.Read(c, clusterview.Options{Ledger: g.opts.Ledger, Trust: g.opts.Trust})
	if err != nil {
		return nil, nil, err
	}
	g.last = &cachedView{changes: changes, cluster: c, view: v}
	return c, v, nil
}

// Start records Events and runs the informers until ctx ends; it returns
// once they have listed the cluster, or with an error if ctx ends first.
func (g *Gate) Start(ctx context.Context) error {
	g.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: g.opts.Client.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		g.events.Shutdown()
	}()
	return g.informers.Start(ctx)
}

// Ready says whether the gate has listed the cluster.
func (g *Gate) Ready() (bool, string) {
	if ok, why := g.source.Synced(); !ok {
		return false, "admission gate: " + why
	}
	return true, ""
}

// Admit decides on pod (mutated, namespace set) against the cluster as
// the informers see it, and records a break-glass admission as an Event
// on the pod's workload, except on a dry run.
func (g *Gate) Admit(ctx context.Context, pod *corev1.Pod, dryRun bool) webhook.GateResult {
	d, c := g.decide(ctx, pod)
	r := webhook.GateResult{Allowed: d.Allowed, Message: d.Message, BreakGlass: d.BreakGlass, Workload: d.Workload}
	if r.Workload == (workload.Ref{}) {
		r.Workload = workload.Ref{Kind: gate.KindPod, Namespace: pod.Namespace, Name: podName(pod)}
	}
	// A pod being created has no UID to hang an Event on; its workload
	// has. A pod without a controller gets the webhook's log line only.
	if d.BreakGlass != "" && !dryRun {
		if obj := workloadObject(c, d.Workload); obj != nil {
			g.recorder.Eventf(obj, corev1.EventTypeWarning, ReasonBreakGlass, "pod %s admitted past the admission gate with %s=%q: %s",
				podName(pod), workload.AnnotationBreakGlass, d.BreakGlass, d.Message)
		}
	}
	return r
}

// decide reads the cluster and asks gate.Decide; c is nil when the
// decision was made without reading it.
func (g *Gate) decide(ctx context.Context, pod *corev1.Pod) (d gate.Decision, c *clusterview.Cluster) {
	if ok, why := g.Ready(); !ok {
		return gate.Decision{Message: why + "; the pod's controller retries"}, nil
	}
	timeout := g.opts.OwnerWait
	if timeout == 0 {
		timeout = DefaultOwnerWait
	}
	// A ReplicaSet creates its first pods moments after it is created
	// itself; without it the pod's policy (on the Deployment) is unknown.
	var missing string
	var v *clusterview.View
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		var err error
		if c, v, err = g.current(); err != nil {
			return false, err
		}
		missing = missingOwner(c, pod)
		return missing == "", nil
	})
	switch {
	case err != nil && missing != "":
		return gate.Decision{Message: fmt.Sprintf("admission gate: %s, this pod's owner, is not in the gate's cache after %s; the pod's controller retries (if this persists, check the webhook's watch permissions)", missing, timeout)}, nil
	case err != nil:
		return gate.Decision{Message: fmt.Sprintf("admission gate: reading the cluster: %v", err)}, nil
	}
	return gate.Decide(v, pod, gate.Options{Nodes: c.Nodes, Classes: c.Classes, Ledger: g.opts.Ledger}), c
}

// missingOwner names the pod's ReplicaSet or Job, or that ReplicaSet's
// Deployment or Job's CronJob, or its StatefulSet, when the cache lacks
// it; "" otherwise.
func missingOwner(c *clusterview.Cluster, pod *corev1.Pod) string {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return ""
	}
	switch ref.Kind {
	case "ReplicaSet":
		return missingVia(c, pod.Namespace, c.ReplicaSets, ref.Kind, ref.Name, workload.KindDeployment)
	case workload.KindJob:
		return missingVia(c, pod.Namespace, c.Jobs, ref.Kind, ref.Name, workload.KindCronJob)
	case workload.KindStatefulSet:
		if workloadObject(c, workload.Ref{Kind: workload.KindStatefulSet, Namespace: pod.Namespace, Name: ref.Name}) == nil {
			return workload.KindStatefulSet + " " + pod.Namespace + "/" + ref.Name
		}
	}
	return ""
}

// missingVia names the intermediate owner kind/name (a ReplicaSet, a Job)
// when owners lack it, or its controller of kind up (a Deployment, a
// CronJob) when the cache lacks that; "" when both are there, or the
// owner has another controller or none (a Job of its own).
func missingVia[T any, PT interface {
	*T
	metav1.Object
}](c *clusterview.Cluster, namespace string, owners []T, kind, name, up string) string {
	for i := range owners {
		o := PT(&owners[i])
		if o.GetNamespace() != namespace || o.GetName() != name {
			continue
		}
		if ctl := metav1.GetControllerOfNoCopy(o); ctl != nil && ctl.Kind == up &&
			workloadObject(c, workload.Ref{Kind: up, Namespace: namespace, Name: ctl.Name}) == nil {
			return up + " " + namespace + "/" + ctl.Name
		}
		return ""
	}
	return kind + " " + namespace + "/" + name
}

// workloadObject is the Deployment or StatefulSet ref names, nil when c
// (which may be nil) has none.
func workloadObject(c *clusterview.Cluster, ref workload.Ref) runtime.Object {
	if c == nil {
		return nil
	}
	return c.Object(ref)
}

// podName names a pod being created, which often has only generateName.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
