// Package seed holds the reference cluster of the seed document as data:
// node homelabai's GPU (an RTX 3080 Ti, 12 GB, time-sliced into 8 shares),
// its workloads (Plex, Ollama, TTS, Whisper, the AI-dev vLLM, the nightly
// training CronJob), their
// PriorityClasses and the Plex pod example. The demo, the end-to-end
// tests, the unit tests and the benchmarks all build on it, so no number
// of the seed is copied anywhere else. It is pure: API types only.
package seed

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Node is a GPU node as the NVIDIA device plugin and GPU
// Feature Discovery would present it.
type Node struct {
	Name string
	// Labels are added to kubernetes.io/hostname and friends, for example
	// GFD's nvidia.com/gpu.product.
	Labels map[string]string
	// Extended resources, e.g. nvidia.com/gpu.shared: 8.
	Resources corev1.ResourceList
}

// HomelabAI is the reference cluster's node: one RTX 3080 Ti (12 GB)
// time-sliced into 8 shares of nvidia.com/gpu.shared, with the original
// resource renamed away.
func HomelabAI() Node {
	return Node{
		Name: "homelabai",
		Labels: map[string]string{
			"nvidia.com/gpu.present":          "true",
			"nvidia.com/gpu.product":          "NVIDIA-GeForce-RTX-3080-Ti-SHARED",
			"nvidia.com/gpu.count":            "1",
			"nvidia.com/gpu.memory":           "12288",
			"nvidia.com/gpu.replicas":         "8",
			"nvidia.com/gpu.sharing-strategy": "time-slicing",
		},
		Resources: corev1.ResourceList{
			"nvidia.com/gpu":        resource.MustParse("0"),
			workload.SharedResource: resource.MustParse("8"),
		},
	}
}

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
	// The seed's manifest also sets NVIDIA_VISIBLE_DEVICES=all, which
	// overrides the GPU the device plugin allocates the shares on; left out.
	c.Env = []corev1.EnvVar{
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

// PlexPod is the seed's Plex example (section "Method 1"): the annotation
// and NVIDIA environment, no devices and no runtime class of its own.
func PlexPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "plex", Namespace: "media",
			Labels:      map[string]string{"app": "plex"},
			Annotations: map[string]string{workload.AnnotationProfiles: "nvidia"},
		},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"},
			Containers: []corev1.Container{{
				Name:  "plex",
				Image: "plexinc/pms-docker:latest",
				Env: []corev1.EnvVar{
					{Name: "NVIDIA_VISIBLE_DEVICES", Value: "all"},
					{Name: "NVIDIA_DRIVER_CAPABILITIES", Value: "compute,video,utility"},
				},
				Ports: []corev1.ContainerPort{{Name: "pms", ContainerPort: 32400}},
			}},
		},
	}
}

// The reference cluster's PriorityClasses: Plex over the AI workloads.
const (
	ClassPlex = "plex-media-critical"
	ClassAI   = "ai-dev-gpu"
)

// PriorityClasses are the reference cluster's, with their values.
func PriorityClasses() []schedulingv1.PriorityClass {
	return []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: ClassPlex}, Value: 1000000},
		{ObjectMeta: metav1.ObjectMeta{Name: ClassAI}, Value: 1000},
	}
}

// ArbitratedWorkloads are the seed's workloads with the arbiter's policy:
// Plex protected in plex-media-critical, vLLM (2 replicas, as a team runs
// it) preemptible in ai-dev-gpu, Ollama preemptible below it. Create the
// PriorityClasses first.
func ArbitratedWorkloads() []Workload {
	ws := append(SeedWorkloads(), VLLMWorkload())
	for _, w := range ws {
		d := w.Deployment
		switch d.Namespace + "/" + d.Name {
		case "media/plex":
			d.Spec.Template.Spec.PriorityClassName = ClassPlex
		case "ai-dev/vllm-server":
			d.Spec.Template.Spec.PriorityClassName = ClassAI
			d.Annotations = map[string]string{workload.AnnotationPreemptible: "true"}
			two := int32(2)
			d.Spec.Replicas = &two
			// One share each: two replicas fit beside the seed's others.
			q := d.Spec.Template.Spec.Containers[0].Resources.Requests[workload.SharedResource]
			q.Set(1)
			d.Spec.Template.Spec.Containers[0].Resources.Requests[workload.SharedResource] = q
			d.Spec.Template.Spec.Containers[0].Resources.Limits[workload.SharedResource] = q
		case "ai/ollama":
			d.Spec.Template.Spec.PriorityClassName = ClassAI
			d.Annotations = map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "500"}
		}
	}
	return ws
}

// TrainingCronJob is the seed's "train models overnight when Plex usage
// is low" as the arbiter wants it: a nightly CronJob at 02:00, preemptible
// and allowed on the GPU only from 01:00 to 06:00, in ai-dev-gpu, with two
// shares on homelabai. Forbid keeps a run suspended at 06:00 from being
// joined by the next night's.
func TrainingCronJob(namespace, name string) *batchv1.CronJob {
	d := deployment(namespace, name, "busybox", 2, "6Gi")
	tmpl := d.Spec.Template
	tmpl.Spec.PriorityClassName = ClassAI
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{
			workload.AnnotationPreemptible: "true", workload.AnnotationActiveHours: "01:00-06:00",
		}},
		Spec: batchv1.CronJobSpec{
			Schedule:          "0 2 * * *",
			ConcurrencyPolicy: batchv1.ForbidConcurrent,
			JobTemplate:       batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}},
		},
	}
}
