package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/pkg/cgroup"
)

// PodContainer names the container a process runs in.
type PodContainer struct {
	Namespace, Pod string
	// Container is empty when the container ID is not (yet) in the pod's
	// status, or the process sits in the pod's own cgroup.
	Container string
}

// PodLookup maps a process's cgroup to its pod and container.
type PodLookup interface {
	Lookup(ref cgroup.Ref) (PodContainer, bool)
	// Synced says whether the pods on the node have been listed once.
	Synced() bool
}

// annotationMirror carries a static pod's kubelet-side UID (the config
// hash its cgroup is named after) on its mirror pod.
const annotationMirror = "kubernetes.io/config.mirror"

const indexUID = "uid"

// PodInformer watches the pods bound to one node (NodePods) and indexes
// them by UID. It keeps only the fields the lookup needs, so a busy node
// costs little memory.
type PodInformer struct {
	node     string
	log      *slog.Logger
	informer cache.SharedIndexInformer

	mu      sync.Mutex
	lastErr string
}

// NewPodInformer prepares the watch of node's pods through pods
// (NodePods); Start runs it.
func NewPodInformer(pods cache.ListerWatcher, node string, log *slog.Logger) (*PodInformer, error) {
	p := &PodInformer{node: node, log: log, informer: cache.NewSharedIndexInformer(pods, &corev1.Pod{}, 0, cache.Indexers{})}
	if err := p.informer.SetTransform(trimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := p.informer.AddIndexers(cache.Indexers{indexUID: podUIDs}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := p.informer.SetWatchErrorHandlerWithContext(p.watchError); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	return p, nil
}

// Start lists and watches until ctx ends. Once listed, it logs how many
// pods the node has: none usually means a wrong --node-name.
func (p *PodInformer) Start(ctx context.Context) {
	go p.informer.RunWithContext(ctx)
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced) {
			return
		}
		n := len(p.informer.GetStore().ListKeys())
		if n == 0 {
			p.log.Warn("the API server lists no pod on this node: every GPU process will show as unknown-pod; check --node-name (NODE_NAME from fieldRef spec.nodeName)", "node", p.node)
			return
		}
		p.log.Info("pods on this node listed", "node", p.node, "pods", n)
	}()
}

// Synced says whether the first list has completed.
func (p *PodInformer) Synced() bool { return p.informer.HasSynced() }

// LastError is the last list or watch failure, for /readyz.
func (p *PodInformer) LastError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// watchError logs list and watch failures once per distinct message, with
// what to grant when it is RBAC; the reflector retries with backoff.
func (p *PodInformer) watchError(_ context.Context, _ *cache.Reflector, err error) {
	msg := err.Error()
	p.mu.Lock()
	repeated := msg == p.lastErr
	p.lastErr = msg
	p.mu.Unlock()
	if repeated {
		return
	}
	hint := "check the agent's API server access"
	if strings.Contains(msg, "forbidden") {
		hint = "grant the agent's ServiceAccount list and watch on pods (a ClusterRole: pods are on every namespace); see docs/agent.md"
	}
	p.log.Error("listing pods on this node failed; GPU memory shows as unknown-pod until it works", "node", p.node, "error", msg, "fix", hint)
}

// Lookup finds the pod by UID (or a static pod by its mirror annotation)
// and the container by ID among its statuses.
func (p *PodInformer) Lookup(ref cgroup.Ref) (PodContainer, bool) {
	objs, err := p.informer.GetIndexer().ByIndex(indexUID, ref.PodUID)
	if err != nil || len(objs) == 0 {
		return PodContainer{}, false
	}
	pod := objs[0].(*corev1.Pod)
	pc := PodContainer{Namespace: pod.Namespace, Pod: pod.Name}
	if ref.ContainerID != "" {
		pc.Container = containerName(pod, ref.ContainerID)
	}
	return pc, true
}

// containerName matches "containerd://<id>" (or docker://, cri-o://)
// against the ID; init and ephemeral containers count too.
func containerName(pod *corev1.Pod, id string) string {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if _, cid, ok := strings.Cut(cs.ContainerID, "://"); ok && cid == id {
				return cs.Name
			}
		}
	}
	return ""
}

func podUIDs(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	uids := []string{string(pod.UID)}
	if m := pod.Annotations[annotationMirror]; m != "" {
		uids = append(uids, m)
	}
	return uids, nil
}

// trimPod keeps what Lookup reads: identity, the mirror annotation and
// the container IDs.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
	}}
	if m := pod.Annotations[annotationMirror]; m != "" {
		out.Annotations = map[string]string{annotationMirror: m}
	}
	trim := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var keep []corev1.ContainerStatus
		for _, cs := range in {
			if cs.ContainerID != "" {
				keep = append(keep, corev1.ContainerStatus{Name: cs.Name, ContainerID: cs.ContainerID})
			}
		}
		return keep
	}
	out.Status.ContainerStatuses = trim(pod.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = trim(pod.Status.InitContainerStatuses)
	out.Status.EphemeralContainerStatuses = trim(pod.Status.EphemeralContainerStatuses)
	return out, nil
}
