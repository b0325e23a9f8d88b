package signals

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/top"
)

// Agents reads gpuslice's node agents (gpuslice_gpu_memory_used_bytes and
// _free_bytes) through the API server's pods proxy, as `gpuslice top`
// does: it needs list on pods and get on pods/proxy, and no network path
// to the nodes.
//
// An agent that cannot be scraped, or whose NVML is down, is named in the
// returned error while the GPUs of the other agents are still returned.
type Agents struct {
	Client    kubernetes.Interface
	Namespace string // "" = all namespaces
	Selector  string // label selector of agent pods; "" = top.DefaultAgentSelector
	Port      int    // 0 = agent.DefaultPort
}

// Name is fixed: the agents are found, not configured one by one.
func (a *Agents) Name() string { return "gpuslice agents" }

// errNVMLDown marks an agent that answers without GPUs because NVML is
// unavailable; its /readyz says why.
var errNVMLDown = errors.New("NVML unavailable on the agent")

// GPUMemory scrapes every agent pod; see Agents for partial results.
func (a *Agents) GPUMemory(ctx context.Context) ([]GPUMemory, error) {
	pods, notRunning, err := a.pods(ctx)
	if err != nil {
		return nil, err
	}
	port := a.Port
	if port == 0 {
		port = agent.DefaultPort
	}
	gpus, err := gather(len(pods), func(i int) ([]GPUMemory, error) {
		p := pods[i]
		body, err := top.ScrapeThroughProxy(ctx, a.Client, p, port)
		if err != nil {
			return nil, err
		}
		gpus, err := parseAgent(body, p.Spec.NodeName)
		if errors.Is(err, errNVMLDown) {
			if why := top.ReadyzThroughProxy(ctx, a.Client, p, port); why != "" {
				err = fmt.Errorf("%w: %s", err, why)
			}
		}
		if err != nil {
			err = fmt.Errorf("agent pod %s/%s on node %s: %w", p.Namespace, p.Name, p.Spec.NodeName, err)
		}
		return gpus, err
	})
	return gpus, errors.Join(notRunning, err)
}

// pods lists the agent pods to scrape, the running ones, and in
// notRunning names each node whose agent is not running. A pod that is
// not running is passed over when its node has another that is (during a
// rollout). err is for finding none to scrape.
func (a *Agents) pods(ctx context.Context) (pods []*corev1.Pod, notRunning, err error) {
	if a.Client == nil {
		return nil, nil, errors.New("gpuslice agents: no Kubernetes client")
	}
	selector := a.Selector
	if selector == "" {
		selector = top.DefaultAgentSelector
	}
	where := "in namespace " + a.Namespace
	if a.Namespace == "" {
		where = "in any namespace"
	}
	list, err := a.Client.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	switch {
	case apierrors.IsForbidden(err):
		return nil, nil, fmt.Errorf("listing gpuslice agent pods %s is forbidden: %w; grant list on pods", where, err)
	case err != nil:
		return nil, nil, fmt.Errorf("listing gpuslice agent pods %s: %w", where, err)
	case len(list.Items) == 0:
		return nil, nil, fmt.Errorf("no gpuslice agent pod %s with labels %s: deploy the agent DaemonSet (docs/agent.md), or set the agents' namespace and selector", where, selector)
	}
	running := map[string]bool{}
	for i := range list.Items {
		if p := &list.Items[i]; p.Status.Phase == corev1.PodRunning {
			running[p.Spec.NodeName] = true
			pods = append(pods, p)
		}
	}
	var errs []error
	for i := range list.Items {
		if p := &list.Items[i]; !running[p.Spec.NodeName] {
			running[p.Spec.NodeName] = true // one error a node
			errs = append(errs, fmt.Errorf("agent pod %s/%s on node %s is %s, not Running: see kubectl -n %s describe pod %s", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Namespace, p.Name))
		}
	}
	if len(pods) == 0 {
		return nil, nil, errors.Join(errs...)
	}
	return pods, errors.Join(errs...), nil
}

// parseAgent reads an agent's /metrics text. podNode is the node the pod
// is bound to, for an agent whose text names none.
func parseAgent(body []byte, podNode string) ([]GPUMemory, error) {
	usage, st, err := top.ParseAgentGPUs(body)
	if err != nil {
		return nil, err
	}
	if !st.NVMLAvailable {
		return nil, errNVMLDown
	}
	gpus := make([]GPUMemory, 0, len(usage))
	for _, u := range usage {
		node := u.Node
		if node == "" {
			node = podNode
		}
		gpus = append(gpus, GPUMemory{Node: node, GPU: u.Index, UUID: u.UUID, Used: u.UsedBytes, Free: u.FreeBytes})
	}
	return gpus, nil
}
