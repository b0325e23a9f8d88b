package demo

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// Deploy creates the workloads and plays the kubelet: it waits until the
// controller manager has made each Deployment's pod and the scheduler has
// bound it, then marks it Running and Ready.
func Deploy(ctx context.Context, c *localcluster.Cluster, workloads ...seed.Workload) error {
	cs := c.Client
	for _, w := range workloads {
		ns := w.Deployment.Namespace
		if err := EnsureNamespace(ctx, cs, ns); err != nil {
			return err
		}
		if w.ConfigMap != nil {
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, w.ConfigMap, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating ConfigMap %s/%s: %w", ns, w.ConfigMap.Name, err)
			}
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, w.Deployment, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Deployment %s/%s: %w", ns, w.Deployment.Name, err)
		}
	}
	for _, w := range workloads {
		if err := RunDeploymentPods(ctx, c, w.Deployment); err != nil {
			return err
		}
	}
	return nil
}

// RunDeploymentPods waits for d's pods to be created and bound, then marks
// them Running and Ready as a kubelet would.
func RunDeploymentPods(ctx context.Context, c *localcluster.Cluster, d *appsv1.Deployment) error {
	want := 1
	if d.Spec.Replicas != nil {
		want = int(*d.Spec.Replicas)
	}
	sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err
		}
		pods = list.Items
		bound := 0
		for _, p := range pods {
			if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
				bound++
			}
		}
		return bound >= want, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Deployment %s/%s's %d pod(s) to be created and scheduled: %w", d.Namespace, d.Name, want, err)
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodRunning {
			continue
		}
		if _, err := c.SetPodRunning(ctx, p.Namespace, p.Name, true); err != nil {
			return err
		}
	}
	return nil
}
