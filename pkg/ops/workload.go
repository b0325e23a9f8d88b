package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// FieldManager is the manager name gpuslice's writes carry in managedFields.
const FieldManager = "gpuslice"

// appsWorkload is a Deployment or StatefulSet (or, for release and restore
// only, a CronJob) seen through the fields ops reads and changes. It
// points into obj, so changes through it change obj.
type appsWorkload struct {
	workload.Ref
	obj      runtime.Object // *appsv1.Deployment, *appsv1.StatefulSet or *batchv1.CronJob
	meta     *metav1.ObjectMeta
	template *corev1.PodTemplateSpec
	replicas **int32
	// suspend is a CronJob's spec.suspend, replicas nil: the CronJob
	// counts as 1 replica while it schedules Jobs, 0 while suspended.
	suspend **bool
	// jobs are the CronJob's Jobs a release suspends or a restore
	// resumes, found before deciding.
	jobs []string
}

func wrapDeployment(d *appsv1.Deployment) *appsWorkload {
	return &appsWorkload{
		Ref: workload.Ref{Kind: workload.KindDeployment, Namespace: d.Namespace, Name: d.Name},
		obj: d, meta: &d.ObjectMeta, template: &d.Spec.Template, replicas: &d.Spec.Replicas,
	}
}

func wrapStatefulSet(s *appsv1.StatefulSet) *appsWorkload {
	return &appsWorkload{
		Ref: workload.Ref{Kind: workload.KindStatefulSet, Namespace: s.Namespace, Name: s.Name},
		obj: s, meta: &s.ObjectMeta, template: &s.Spec.Template, replicas: &s.Spec.Replicas,
	}
}

// Replicas is spec.replicas, with the API server's default of 1; for a
// CronJob 0 when suspended, else 1.
func (w *appsWorkload) Replicas() int32 {
	if w.suspend != nil {
		if *w.suspend != nil && **w.suspend {
			return 0
		}
		return 1
	}
	if *w.replicas == nil {
		return 1
	}
	return **w.replicas
}

func (w *appsWorkload) setReplicas(n int32) {
	if w.suspend != nil {
		suspend := n == 0
		*w.suspend = &suspend
		return
	}
	*w.replicas = &n
}

func (w *appsWorkload) annotate(key, value string) { annotate(w.meta, key, value) }

// rollingKeepsOld says whether a rollout starts a new pod before an old one
// stops, so that both hold their GPU shares at once: a Deployment's
// RollingUpdate whose maxUnavailable comes to 0 for these replicas (the
// default 25% does below 4). Recreate, and StatefulSets, which delete a pod
// before creating its replacement, do not.
func (w *appsWorkload) rollingKeepsOld(replicas int32) bool {
	d, ok := w.obj.(*appsv1.Deployment)
	if !ok || d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return false
	}
	maxUnavailable := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		maxUnavailable = *ru.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&maxUnavailable, int(replicas), false)
	return err == nil && n == 0
}

// restart does what kubectl rollout restart does to the object: set the
// template's restartedAt to now in RFC 3339. Like kubectl it refuses a
// paused Deployment, and a second restart within the same second, which
// would change nothing.
func (w *appsWorkload) restart(now time.Time) (string, error) {
	if d, ok := w.obj.(*appsv1.Deployment); ok && d.Spec.Paused {
		return "", fmt.Errorf("%s is paused, so a restart would not roll out: run kubectl rollout resume %s first", w.Qualified(), w.KubectlArgs())
	}
	ts := now.Format(time.RFC3339)
	if w.template.Annotations[workload.AnnotationRestartedAt] == ts {
		return "", fmt.Errorf("%s was already restarted at %s, this second: run the command again", w.Qualified(), ts)
	}
	if w.template.Annotations == nil {
		w.template.Annotations = map[string]string{}
	}
	w.template.Annotations[workload.AnnotationRestartedAt] = ts
	return ts, nil
}

// patchFrom is the strategic merge patch from before to after, as kubectl
// edit computes it, pinned to before's resourceVersion: the API server
// applies it whole or answers Conflict if the object changed since it was
// read. A patch, unlike an Update, leaves alone fields this client does not
// know. A nil patch means nothing changed.
func patchFrom(before, after runtime.Object, resourceVersion string) ([]byte, error) {
	b, err := json.Marshal(before)
	if err != nil {
		return nil, err
	}
	a, err := json.Marshal(after)
	if err != nil {
		return nil, err
	}
	p, err := strategicpatch.CreateTwoWayMergePatch(b, a, before)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	meta["resourceVersion"] = resourceVersion
	return json.Marshal(m)
}

// object is what the typed clients return.
type object interface {
	runtime.Object
	metav1.Object
}

// client is the part of a typed client (Deployments, StatefulSets,
// ConfigMaps) that modify uses.
type client[T object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// modify reads an object, lets change edit a copy (reporting whether it
// changed anything) and writes the difference in one patch. On a Conflict
// it starts over from a fresh read, so change always decides on what is
// stored. With dryRun nothing is written. change's own errors (refusals)
// come back as they are; API errors name the object (what).
func modify[T object](ctx context.Context, c client[T], what, name string, dryRun bool, change func(T) (bool, error)) error {
	var refused error
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := cur.DeepCopyObject().(T)
		changed, err := change(next)
		if err != nil {
			refused = err
			return err
		}
		if !changed || dryRun {
			return nil
		}
		data, err := patchFrom(cur, next, cur.GetResourceVersion())
		if err != nil {
			return fmt.Errorf("computing the patch: %w", err)
		}
		if data == nil {
			return nil
		}
		_, err = c.Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil && err == refused {
		return err
	}
	return apiErr(what, err)
}

// modifyWorkload is modify for a Deployment or StatefulSet.
func modifyWorkload(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, dryRun bool, change func(*appsWorkload) (bool, error)) error {
	switch ref.Kind {
	case workload.KindDeployment:
		return modify(ctx, cs.AppsV1().Deployments(ref.Namespace), ref.Qualified(), ref.Name, dryRun,
			func(d *appsv1.Deployment) (bool, error) { return change(wrapDeployment(d)) })
	case workload.KindStatefulSet:
		return modify(ctx, cs.AppsV1().StatefulSets(ref.Namespace), ref.Qualified(), ref.Name, dryRun,
			func(s *appsv1.StatefulSet) (bool, error) { return change(wrapStatefulSet(s)) })
	case workload.KindCronJob:
		return fmt.Errorf("%s: only gpuslice release and restore act on a CronJob (they suspend and resume it and its Jobs); change its jobTemplate with kubectl edit %s",
			ref.Qualified(), ref.KubectlArgs())
	}
	return fmt.Errorf("%s: unsupported kind %q", ref.Name, ref.Kind)
}

// modifyConfigMap is modify for a ConfigMap.
func modifyConfigMap(ctx context.Context, cs kubernetes.Interface, namespace, name string, dryRun bool, change func(*corev1.ConfigMap) (bool, error)) error {
	return modify(ctx, cs.CoreV1().ConfigMaps(namespace), "ConfigMap "+namespace+"/"+name, name, dryRun, change)
}

// getWorkload reads a Deployment or StatefulSet.
func getWorkload(ctx context.Context, cs kubernetes.Interface, ref workload.Ref) (*appsWorkload, error) {
	var w *appsWorkload
	err := modifyWorkload(ctx, cs, ref, true, func(cur *appsWorkload) (bool, error) {
		w = cur
		return false, nil
	})
	return w, err
}

// listWorkloads lists a namespace's Deployments and StatefulSets.
func listWorkloads(ctx context.Context, cs kubernetes.Interface, namespace string) ([]*appsWorkload, error) {
	deps, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr("Deployments in namespace "+namespace, err)
	}
	sts, err := cs.AppsV1().StatefulSets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr("StatefulSets in namespace "+namespace, err)
	}
	var out []*appsWorkload
	for i := range deps.Items {
		out = append(out, wrapDeployment(&deps.Items[i]))
	}
	for i := range sts.Items {
		out = append(out, wrapStatefulSet(&sts.Items[i]))
	}
	return out, nil
}

// apiErr names the object and the usual fix for the errors users meet.
func apiErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s not found: check the name and -n NAMESPACE: %w", what, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: forbidden: grant this user get and patch on it: %w", what, err)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%s kept changing while gpuslice wrote it: run the command again: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
