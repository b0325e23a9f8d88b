package ledger

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Builders for the seed cluster and its variations. Pods are built the way
// the API server would return them, minus the fields the ledger ignores.

type podOpt func(*corev1.Pod)

func newPod(namespace, name, node string, opts ...podOpt) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "main"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if node == "" {
		p.Status.Phase = corev1.PodPending
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

// shares requests n of res on the main container, as limits only: the
// ledger must default requests to limits like the API server does.
func shares(res string, n int64) podOpt {
	return func(p *corev1.Pod) {
		setQuantity(&p.Spec.Containers[0].Resources.Limits, res, n)
	}
}

func annotate(key, value string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[key] = value
	}
}

func webhook() podOpt { return annotate(workload.AnnotationProfiles, "nvidia") }

func gpuMemory(v string) podOpt { return annotate(workload.AnnotationMemory, v) }

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func ownedBy(kind, name string) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences = controllerRef(kind, name) }
}

func container(c corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0] = c }
}

func initContainer(c corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, c) }
}

func withRequests(name string, res string, n int64) corev1.Container {
	c := corev1.Container{Name: name}
	setQuantity(&c.Resources.Requests, res, n)
	return c
}

func setQuantity(list *corev1.ResourceList, res string, n int64) {
	if *list == nil {
		*list = corev1.ResourceList{}
	}
	(*list)[corev1.ResourceName(res)] = *resource.NewQuantity(n, resource.DecimalSI)
}

func controllerRef(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &yes}}
}

// deployment returns the pods of a Deployment and the ReplicaSet linking
// them to it, with generated names like the controllers make.
func deployment(namespace, name, node string, replicas int, opts ...podOpt) ([]corev1.Pod, appsv1.ReplicaSet) {
	rsName := name + "-5d8f9c7b6"
	rs := appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: namespace, Name: rsName, OwnerReferences: controllerRef("Deployment", name),
	}}
	var pods []corev1.Pod
	for i := range replicas {
		suffix := string(rune('a' + i))
		pods = append(pods, newPod(namespace, rsName+"-x"+suffix, node, append(opts, ownedBy("ReplicaSet", rsName))...))
	}
	return pods, rs
}

type nodeOpt func(*corev1.Node)

func newNode(name string, opts ...nodeOpt) corev1.Node {
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}, Annotations: map[string]string{}},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")},
		},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

// gpuResource sets capacity and allocatable alike.
func gpuResource(res string, n int64) nodeOpt {
	return func(node *corev1.Node) {
		setQuantity(&node.Status.Capacity, res, n)
		setQuantity(&node.Status.Allocatable, res, n)
	}
}

func nodeLabel(key, value string) nodeOpt {
	return func(n *corev1.Node) { n.Labels[key] = value }
}

// nodeCondition sets the node's Ready condition.
func nodeCondition(status corev1.ConditionStatus) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "KubeletNotReady"}}
	}
}

func nodeAnnotation(key, value string) nodeOpt {
	return func(n *corev1.Node) { n.Annotations[key] = value }
}

// gfd sets the GPU Feature Discovery labels.
func gfd(product, count, memoryMiB, replicas string) nodeOpt {
	return func(n *corev1.Node) {
		for k, v := range map[string]string{
			LabelGPUProduct: product, LabelGPUCount: count, LabelGPUMemory: memoryMiB, LabelGPUReplicas: replicas,
		} {
			n.Labels[k] = v
		}
	}
}

func configMap(namespace, name string, data map[string]string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Data: data}
}

// cluster collects fixtures into an Input.
type cluster struct{ in Input }

func (c *cluster) node(n corev1.Node) *cluster {
	c.in.Nodes = append(c.in.Nodes, n)
	return c
}

func (c *cluster) pods(p ...corev1.Pod) *cluster {
	c.in.Pods = append(c.in.Pods, p...)
	return c
}

func (c *cluster) deploy(namespace, name, node string, replicas int, opts ...podOpt) *cluster {
	pods, rs := deployment(namespace, name, node, replicas, opts...)
	c.in.ReplicaSets = append(c.in.ReplicaSets, rs)
	return c.pods(pods...)
}

func (c *cluster) configMap(cm corev1.ConfigMap) *cluster {
	c.in.ConfigMaps = append(c.in.ConfigMaps, cm)
	return c
}

func (c *cluster) job(j batchv1.Job) *cluster {
	c.in.Jobs = append(c.in.Jobs, j)
	return c
}

const (
	homelab = "homelabai"
	shared  = workload.SharedResource
)

// seedCluster is the reference cluster of the seed document: one RTX 3080
// Ti time-sliced into 8 renamed shares, Plex through the webhook only, the
// AI services through shares and, after the AI-dev deployment, vLLM in the
// hybrid way with its memory set by a ConfigMap.
func seedCluster(withVLLM bool) *cluster {
	c := &cluster{}
	c.node(newNode(homelab,
		gpuResource("nvidia.com/gpu", 0),
		gpuResource(shared, 8),
		gfd("NVIDIA-GeForce-RTX-3080-Ti", "1", "12288", "8"),
	))
	c.deploy("media", "plex", homelab, 1, webhook())
	c.deploy("ai", "ollama", homelab, 1, shares(shared, 1), gpuMemory("2Gi-4Gi"))
	c.deploy("ai", "tts", homelab, 1, shares(shared, 1), gpuMemory("512Mi-1Gi"))
	c.deploy("ai", "whisper", homelab, 1, shares(shared, 2), gpuMemory("2Gi-3Gi"))
	c.node(newNode("worker1")) // no GPU: not reported
	c.deploy("web", "nginx", "worker1", 2)
	if withVLLM {
		c.configMap(configMap("ai-dev", "vllm-config", map[string]string{
			workload.EnvGPUMemoryUtilization: "0.70", "MAX_MODEL_LEN": "8192",
		}))
		c.deploy("ai-dev", "vllm-server", homelab, 1, webhook(), shares(shared, 2),
			func(p *corev1.Pod) {
				p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{
					ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}},
				}}
			})
	}
	return c
}

// seedOptions gives Plex the seed's "~1-2GB" since it has no annotation.
func seedOptions() Options {
	return Options{DefaultMemory: map[string]MemoryRange{"plex": mustRange("1-2Gi")}}
}

func mustRange(s string) MemoryRange {
	m, err := ParseMemoryRange(s)
	if err != nil {
		panic(err)
	}
	return m
}
