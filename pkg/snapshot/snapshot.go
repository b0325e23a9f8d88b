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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// Take lists nodes, pods, ReplicaSets and Jobs cluster-wide (a node's free
// shares depend on every pod bound to it, whatever the namespace shown),
// and gets the ConfigMaps GPU pods read their settings from. A ConfigMap it
// may not read is skipped: the ledger then shows that workload's memory as
// unknown rather than failing the whole report.
func Take(ctx context.Context, cs kubernetes.Interface, opt ledger.Options) (ledger.Input, error) {
	var in ledger.Input
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, listErr("nodes", err)
	}
	in.Nodes = nodes.Items
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, listErr("pods", err)
	}
	in.Pods = pods.Items
	rss, err := cs.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, listErr("replicasets", err)
	}
	in.ReplicaSets = rss.Items
	jobs, err := cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return in, listErr("jobs", err)
	}
	in.Jobs = jobs.Items
	for _, ref := range configMapRefs(in.Pods, opt) {
		cm, err := cs.CoreV1().ConfigMaps(ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				continue
			}
			return in, fmt.Errorf("reading ConfigMap %s/%s: %w", ref.namespace, ref.name, err)
		}
		in.ConfigMaps = append(in.ConfigMaps, *cm)
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
	for i := range pods {
		p := &pods[i]
		if !ledger.IsGPUPod(p, opt) {
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

// Ledger reads the cluster and computes the share and VRAM ledger.
func Ledger(ctx context.Context, cs kubernetes.Interface, opt ledger.Options) (*ledger.Report, error) {
	in, err := Take(ctx, cs, opt)
	if err != nil {
		return nil, err
	}
	return ledger.Build(in, opt)
}
