package demo

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Workload is one of the seed's GPU workloads as a Deployment (and the
// ConfigMap it reads, for vLLM).
type Workload struct {
	Deployment *appsv1.Deployment
	ConfigMap  *corev1.ConfigMap
}

// SeedWorkloads are the reference cluster's workloads before the AI-dev
// deployment (seed, "Current GPU Allocation" and "GPU Memory
// Considerations"): Plex through the webhook only, Ollama, TTS and Whisper
// by share requests. Plex is protected: gpuslice release refuses it, since
// freeing the GPU for Plex is what releases are for.
func SeedWorkloads() []Workload {
	plex := deployment("media", "plex", "plexinc/pms-docker:latest", 0, "1Gi-2Gi")
	plex.Annotations = map[string]string{workload.AnnotationProtected: "true"}
	plex.Spec.Template.Annotations[workload.AnnotationProfiles] = "nvidia"
	plex.Spec.Template.Spec.Containers[0].Env = PlexPod().Spec.Containers[0].Env
	return []Workload{
		{Deployment: plex},
		{Deployment: deployment("ai", "ollama", "ollama/ollama:latest", 1, "2Gi-4Gi")},
		{Deployment: deployment("ai", "tts", "ghcr.io/coqui-ai/tts:latest", 1, "512Mi-1Gi")},
		{Deployment: deployment("ai", "whisper", "onerahmet/openai-whisper-asr-webservice:latest-gpu", 2, "2Gi-3Gi")},
	}
}

// VLLMWorkload is the seed's AI-dev deployment (section "Method 3"): the
// hybrid method, 2 shares, and GPU_MEMORY_UTILIZATION 0.70 from ConfigMap
// vllm-config.
func VLLMWorkload() Workload {
	d := deployment("ai-dev", "vllm-server", "vllm/vllm-openai:latest", 2, "")
	d.Spec.Template.Labels["app"] = "vllm"
	d.Spec.Selector.MatchLabels["app"] = "vllm"
	d.Spec.Template.Annotations[workload.AnnotationProfiles] = "nvidia"
	d.Spec.Template.Spec.RuntimeClassName = ptr.To("nvidia")
	c := &d.Spec.Template.Spec.Containers[0]
	c.Name = "vllm"
	c.Env = []corev1.EnvVar{
		{Name: "NVIDIA_VISIBLE_DEVICES", Value: "all"},
		{Name: "NVIDIA_DRIVER_CAPABILITIES", Value: "compute,utility"},
	}
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}}}
	return Workload{
		Deployment: d,
		ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "vllm-config", Namespace: "ai-dev"},
			Data: map[string]string{
				"MODEL":                          "TheBloke/deepseek-coder-6.7B-instruct-AWQ",
				workload.EnvGPUMemoryUtilization: "0.70",
				"MAX_MODEL_LEN":                  "8192",
			},
		},
	}
}

// SharesDeployment is a one-replica Deployment requesting shares of
// nvidia.com/gpu.shared, the seed's "Method 2".
func SharesDeployment(namespace, name string, shares int64) *appsv1.Deployment {
	return deployment(namespace, name, "busybox", shares, "")
}

// deployment builds a one-replica Deployment pinned to homelabai; shares 0
// means no share request.
func deployment(namespace, name, image string, shares int64, memory string) *appsv1.Deployment {
	podLabels := map[string]string{"app": name}
	annotations := map[string]string{}
	if memory != "" {
		annotations[workload.AnnotationMemory] = memory
	}
	c := corev1.Container{Name: name, Image: image}
	if shares > 0 {
		q := *resource.NewQuantity(shares, resource.DecimalSI)
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{workload.SharedResource: q},
			Limits:   corev1.ResourceList{workload.SharedResource: q},
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": name}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: annotations},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"},
					Containers:   []corev1.Container{c},
				},
			},
		},
	}
}

// Deploy creates the workloads and plays the kubelet: it waits until the
// controller manager has made each Deployment's pod and the scheduler has
// bound it, then marks it Running and Ready.
func Deploy(ctx context.Context, c *localcluster.Cluster, workloads ...Workload) error {
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
