package webhook

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

// mutationPod is the part of a pod that inject.Config.Mutate reads, and
// that the handler names the pod by. Decoding only this skips most of a
// pod (images, probes, security contexts, status), a third of the
// webhook's CPU per admission when the whole pod was decoded. What is
// decoded is decoded whole, so the patch's choice between adding a list
// and appending to it sees the same presence as with the full pod.
// FuzzMutationPodMatchesFullPod holds Mutate's decision equal on both.
//
// A field Mutate starts to read must be added here.
type mutationPod struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		// Volumes are decoded once the shape bound has counted them: a
		// corev1.Volume is large, and a pod of many "{}" volumes would
		// otherwise cost hundreds of MiB (TestWorstAllowedRequestHeap).
		Volumes          []json.RawMessage   `json:"volumes"`
		InitContainers   []mutationContainer `json:"initContainers"`
		Containers       []mutationContainer `json:"containers"`
		RuntimeClassName *string             `json:"runtimeClassName"`
		// Counted only, for the shape bound.
		EphemeralContainers []struct{} `json:"ephemeralContainers"`
	} `json:"spec"`
}

type mutationContainer struct {
	Name         string                       `json:"name"`
	Env          []corev1.EnvVar              `json:"env"`
	Resources    *corev1.ResourceRequirements `json:"resources"`
	VolumeMounts []corev1.VolumeMount         `json:"volumeMounts"`
}

// podCounts are what the shape bound (Limits.checkShape) counts.
type podCounts struct{ containers, volumes int }

// decodeMutationPod decodes raw as inject.DecodePod does (field names
// case-sensitive, duplicates refused), but only mutationPod's fields. It
// checks the shape bound before it builds the corev1.Pod Mutate reads;
// reason is not empty when the bound refuses the pod.
func (l Limits) decodeMutationPod(raw []byte) (pod *corev1.Pod, reason, message string, err error) {
	var p mutationPod
	if err := strict(sigsjson.UnmarshalStrict(raw, &p, sigsjson.DisallowDuplicateFields)); err != nil {
		return nil, "", "", fmt.Errorf("decode pod: %w", err)
	}
	m, s := p.Metadata, p.Spec
	counts := podCounts{containers: len(s.Containers) + len(s.InitContainers) + len(s.EphemeralContainers), volumes: len(s.Volumes)}
	if reason, message := l.checkShape(counts); reason != "" {
		return nil, reason, message, nil
	}
	var volumes []corev1.Volume
	if s.Volumes != nil {
		volumes = make([]corev1.Volume, len(s.Volumes))
	}
	for i, raw := range s.Volumes {
		if err := strict(sigsjson.UnmarshalStrict(raw, &volumes[i], sigsjson.DisallowDuplicateFields)); err != nil {
			return nil, "", "", fmt.Errorf("decode pod: spec.volumes[%d]: %w", i, err)
		}
	}
	pod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, GenerateName: m.GenerateName, Namespace: m.Namespace, Annotations: m.Annotations},
		Spec: corev1.PodSpec{
			Volumes: volumes, InitContainers: containers(s.InitContainers), Containers: containers(s.Containers),
			RuntimeClassName: s.RuntimeClassName,
		},
	}
	return pod, "", "", nil
}

// strict joins sigsjson.UnmarshalStrict's two kinds of error.
func strict(strictErrs []error, err error) error {
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func containers(in []mutationContainer) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i, c := range in {
		out[i] = corev1.Container{Name: c.Name, Env: c.Env, VolumeMounts: c.VolumeMounts}
		if c.Resources != nil {
			out[i].Resources = *c.Resources
		}
	}
	return out
}
