// Package snapshot reads, from a live cluster, the objects the share and
// VRAM ledger works on. It is the ledger's only Kubernetes I/O: the ledger
// itself computes on the lists it is given.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Take lists nodes, pods, ReplicaSets and Jobs cluster-wide (a node's free
// shares depend on every pod bound to it, whatever the namespace shown),
// and gets the ConfigMaps GPU pods read their settings from. A ConfigMap it
// may not read is skipped: the ledger then shows that workload's memory as
// unknown rather than failing the whole report. Finished pods are kept:
// doctor reads them as evidence.
func Take(ctx context.Context, cs kubernetes.Interface, opt ledger.Options) (ledger.Input, error) {
	return take(ctx, cs, opt, whole)
}

// Ledger reads what the ledger counts and computes it. It lists less than
// Take, filtered by the API server: no finished pods (they hold no
// shares), and with opt.Node only that node and the pods bound to it.
// It also lists Deployments, StatefulSets and CronJobs for the workloads gpuslice
// released or lowered, which have no pods to show; a user who may not
// list them gets the report without, and a warning.
func Ledger(ctx context.Context, cs kubernetes.Interface, opt ledger.Options) (*ledger.Report, error) {
	// The workloads are listed beside the ledger's objects, not after
	// them: one round trip less on status's path.
	var managed []ledger.ManagedWorkload
	var merr error
	var wg sync.WaitGroup
	wg.Go(func() { managed, merr = Managed(ctx, cs, opt.Namespace) })
	in, err := take(ctx, cs, opt, ledgerOnly)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	in.Managed = managed
	r, err := ledger.Build(in, opt)
	if err != nil {
		return nil, err
	}
	if merr != nil {
		r.Warnings = append(r.Warnings, fmt.Sprintf("released and lowered workloads not shown: %v", merr))
	}
	return r, nil
}

// Managed lists the Deployments, StatefulSets and CronJobs of namespace
// ("" for all) that carry a release or lower record.
func Managed(ctx context.Context, cs kubernetes.Interface, namespace string) ([]ledger.ManagedWorkload, error) {
	var out []ledger.ManagedWorkload
	deps, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, listErr("deployments", err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		out = appendManaged(out, workload.Ref{Kind: workload.KindDeployment, Namespace: d.Namespace, Name: d.Name}, d.Annotations, d.Spec.Replicas)
	}
	sts, err := cs.AppsV1().StatefulSets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, listErr("statefulsets", err)
	}
	for i := range sts.Items {
		s := &sts.Items[i]
		out = appendManaged(out, workload.Ref{Kind: workload.KindStatefulSet, Namespace: s.Namespace, Name: s.Name}, s.Annotations, s.Spec.Replicas)
	}
	cjs, err := cs.BatchV1().CronJobs(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, listErr("cronjobs", err)
	}
	for i := range cjs.Items {
		cj := &cjs.Items[i]
		replicas := int32(1)
		if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
			replicas = 0
		}
		out = appendManaged(out, workload.Ref{Kind: workload.KindCronJob, Namespace: cj.Namespace, Name: cj.Name}, cj.Annotations, &replicas)
	}
	return out, nil
}

// appendManaged keeps only workloads with a release or lower record.
func appendManaged(out []ledger.ManagedWorkload, ref workload.Ref, ann map[string]string, replicas *int32) []ledger.ManagedWorkload {
	_, released := ann[workload.AnnotationReleasedReplicas]
	_, lowered := ann[workload.AnnotationLoweredFrom]
	if !released && !lowered {
		return out
	}
	n := int32(1)
	if replicas != nil {
		n = *replicas
	}
	return append(out, ledger.ManagedWorkload{Ref: ref, Annotations: ann, Replicas: n})
}

// listing says how much take lists.
type listing int

const (
	// whole lists every object in full (doctor, top).
	whole listing = iota
	// counted narrows the lists to what the ledger counts: pods not
	// finished, and ReplicaSets and Jobs as metadata only, since the ledger
	// reads nothing else of them (their pod templates are most of their
	// bytes).
	counted
	// ledgerOnly is counted with each pod's status cut to its phase: the
	// ledger alone (status) reads nothing more; the gate's decision reads
	// readiness.
	ledgerOnly
)

// take lists the four kinds at once, then gets the ConfigMaps.
func take(ctx context.Context, cs kubernetes.Interface, opt ledger.Options, how listing) (ledger.Input, error) {
	var in ledger.Input
	nodeSel, podSel := fields.Everything(), fields.Everything()
	if how != whole {
		podSel = fields.AndSelectors(fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
			fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)))
		if opt.Node != "" {
			nodeSel = fields.OneTermEqualSelector("metadata.name", opt.Node)
			podSel = fields.AndSelectors(podSel, fields.OneTermEqualSelector("spec.nodeName", opt.Node))
		}
	}
	// Each list's error in a fixed order, so that a user without RBAC is
	// told every grant missing, nodes first.
	var errs [4]error
	var wg sync.WaitGroup
	wg.Go(func() {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: nodeSel.String()})
		if err != nil {
			errs[0] = listErr("nodes", err)
			return
		}
		in.Nodes = l.Items
	})
	wg.Go(func() {
		if how == whole {
			in.Pods, errs[1] = listPods(ctx, cs, podSel.String())
			return
		}
		in.Pods, errs[1] = listCountedPods(ctx, cs.CoreV1().RESTClient(), podSel.String(), opt, how == ledgerOnly)
	})
	wg.Go(func() {
		if how != whole {
			// The ledger reads only a ReplicaSet's controller.
			in.ReplicaSets, errs[2] = listOwners(ctx, cs.AppsV1().RESTClient(), "replicasets", func(m metav1.ObjectMeta) appsv1.ReplicaSet { return appsv1.ReplicaSet{ObjectMeta: m} })
			return
		}
		l, err := cs.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			errs[2] = listErr("replicasets", err)
			return
		}
		in.ReplicaSets = l.Items
	})
	wg.Go(func() {
		if how != whole {
			in.Jobs, errs[3] = listOwners(ctx, cs.BatchV1().RESTClient(), "jobs", func(m metav1.ObjectMeta) batchv1.Job { return batchv1.Job{ObjectMeta: m} })
			return
		}
		l, err := cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
		if err != nil {
			errs[3] = listErr("jobs", err)
			return
		}
		in.Jobs = l.Items
	})
	wg.Wait()
	for _, err := range errs {
		if isUnreachable(err) {
			return in, err // one "cannot reach" says it all
		}
	}
	if err := errors.Join(errs[:]...); err != nil {
		return in, err
	}
	refs := configMapRefs(in.Pods, opt)
	got := make([]*corev1.ConfigMap, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, ref := range refs {
		g.Go(func() error {
			cm, err := cs.CoreV1().ConfigMaps(ref.namespace).Get(gctx, ref.name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
				return nil
			case err != nil:
				return fmt.Errorf("reading ConfigMap %s/%s: %w", ref.namespace, ref.name, err)
			}
			got[i] = cm
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return in, err
	}
	for _, cm := range got {
		if cm != nil {
			in.ConfigMaps = append(in.ConfigMaps, *cm)
		}
	}
	return in, nil
}

// listErr turns the two failures users meet into instructions.
func listErr(resource string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("listing %s in all namespaces is forbidden: %w; grant get and list on %s cluster-wide (a ClusterRole) to this user", resource, err, resource)
	case isUnreachable(err):
		return fmt.Errorf("cannot reach the Kubernetes API server to list %s: %w; check --kubeconfig, --context and that the cluster is up", resource, err)
	}
	return fmt.Errorf("listing %s: %w", resource, err)
}

func isUnreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

type cmRef struct{ namespace, name string }

// configMapRefs are the ConfigMaps that pods requesting a GPU, or annotated
// for one, take environment from.
func configMapRefs(pods []corev1.Pod, opt ledger.Options) []cmRef {
	seen := map[cmRef]bool{}
	isGPUPod := ledger.GPUPods(opt)
	for i := range pods {
		p := &pods[i]
		if !isGPUPod(p) {
			continue
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					seen[cmRef{p.Namespace, ef.ConfigMapRef.Name}] = true
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					seen[cmRef{p.Namespace, e.ValueFrom.ConfigMapKeyRef.Name}] = true
				}
			}
		}
	}
	out := make([]cmRef, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].namespace != out[j].namespace {
			return out[i].namespace < out[j].namespace
		}
		return out[i].name < out[j].name
	})
	return out
}
