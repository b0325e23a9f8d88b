package realnode

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// DeployWorkloads creates the workloads (their namespaces and ConfigMaps
// too; existing ones are left as they are) running the testbox image as
// s says, and waits for each Deployment's pods. It returns one running pod
// per Deployment, by name.
func (n *RealNode) DeployWorkloads(ctx context.Context, workloads []seed.Workload, s Standins) (map[string]*corev1.Pod, error) {
	for _, w := range workloads {
		d := w.Deployment.DeepCopy()
		if err := demo.EnsureNamespace(ctx, n.Client, d.Namespace); err != nil {
			return nil, err
		}
		if w.ConfigMap != nil {
			if _, err := n.Client.CoreV1().ConfigMaps(d.Namespace).Create(ctx, w.ConfigMap, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating ConfigMap %s/%s: %w", d.Namespace, w.ConfigMap.Name, err)
			}
		}
		n.UseTestbox(&d.Spec.Template.Spec, s)
		if _, err := n.Client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating Deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	pods := map[string]*corev1.Pod{}
	for _, w := range workloads {
		p, err := n.WaitDeployment(ctx, w.Deployment.Namespace, w.Deployment.Name, 2*time.Minute)
		if err != nil {
			return nil, err
		}
		pods[w.Deployment.Name] = p
	}
	return pods, nil
}

// WaitDeployment waits until a Deployment's pods are its spec.replicas
// (none terminating), all running and ready, and returns the first; nil
// for a Deployment scaled to zero once its pods are gone.
func (n *RealNode) WaitDeployment(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	var pod *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()
		list, err := n.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		want := int(*d.Spec.Replicas)
		last = fmt.Sprintf("%d pods, want %d; status %+v", len(list.Items), want, d.Status)
		if d.Status.ObservedGeneration < d.Generation || int(d.Status.UpdatedReplicas) != want || int(d.Status.Replicas) != want || len(list.Items) != want {
			return false, nil
		}
		pod = nil
		for i := range list.Items {
			p := &list.Items[i]
			if p.DeletionTimestamp != nil || !PodReady(p) {
				last = fmt.Sprintf("pod %s: %s, ready %v, deleting %v", p.Name, p.Status.Phase, PodReady(p), p.DeletionTimestamp != nil)
				return false, nil
			}
			if pod == nil {
				pod = p
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the Deployment %s/%s's pods never settled (%s): %w; its events: %s", ns, name, last, err, n.Events(ctx, ns, name))
	}
	return pod, nil
}

// PodReady says whether the pod runs with its Ready condition true.
func PodReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitAgentReady waits until the node's one agent pod is Ready and runs
// with hostPID as asked (a changed DaemonSet replaces its pod).
func (n *RealNode) WaitAgentReady(ctx context.Context, hostPID bool) (*corev1.Pod, error) {
	var pod *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := n.Client.CoreV1().Pods(chart.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%d agent pods", len(list.Items))
		if len(list.Items) != 1 {
			return false, nil
		}
		p := list.Items[0]
		last = fmt.Sprintf("%s %s hostPID=%v conditions %v%s", p.Name, p.Status.Phase, p.Spec.HostPID, p.Status.Conditions, n.Events(ctx, p.Namespace, p.Name))
		if p.DeletionTimestamp != nil || p.Spec.HostPID != hostPID || !PodReady(&p) {
			return false, nil
		}
		pod = &p
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the agent pod never became Ready with hostPID=%v: %w (%s)", hostPID, err, last)
	}
	return pod, nil
}
