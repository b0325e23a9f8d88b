package webhook

import (
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
// case-sensitive, duplicates refused), but only mutationPod's fields, and
// builds the pod Mutate reads (see podForMutation).
func (l Limits) decodeMutationPod(raw []byte) (pod *corev1.Pod, reason, message string, err error) {
	var p mutationPod
	if err := strict(sigsjson.UnmarshalStrict(raw, &p, sigsjson.DisallowDuplicateFields)); err != nil {
		return nil, "", "", fmt.Errorf("decode pod: %w", err)
	}
	return l.podForMutation(&p)
}

// podForMutation checks the shape bound before it builds the corev1.Pod
// Mutate reads; reason is not empty when the bound refuses the pod.
func (l Limits) podForMutation(p *mutationPod) (pod *corev1.Pod, reason, message string, err error) {
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

// createReview is an AdmissionReview with its object decoded as a
// mutationPod in the same pass. encoding/json scans its input twice (a
// validity check, then the decode) and an unknown field is scanned as
// much as a known one, so what a pod costs is how often its bytes are
// scanned: decoding the review, then the pod from the review's copy of it,
// then the shape bound, scanned it six times. This scans it twice.
type createReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID         types.UID               `json:"uid"`
		Kind        metav1.GroupVersionKind `json:"kind"`
		SubResource string                  `json:"subResource"`
		Operation   admissionv1.Operation   `json:"operation"`
		Name        string                  `json:"name"`
		Namespace   string                  `json:"namespace"`
		DryRun      *bool                   `json:"dryRun"`
		Object      *mutationPod            `json:"object"`
	} `json:"request"`
}

// decodeCreateReview decodes body as a createReview, strictly. ok is
// false when it does not decode so or carries no object: the caller then
// decodes the review whole, which says what is wrong.
func decodeCreateReview(body []byte) (review admissionv1.AdmissionReview, pod *mutationPod, ok bool) {
	var c createReview
	if strict(sigsjson.UnmarshalStrict(body, &c, sigsjson.DisallowDuplicateFields)) != nil || c.Request == nil || c.Request.Object == nil {
		return review, nil, false
	}
	r := c.Request
	review = admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: c.APIVersion, Kind: c.Kind},
		Request: &admissionv1.AdmissionRequest{
			UID: r.UID, Kind: r.Kind, SubResource: r.SubResource, Operation: r.Operation,
			Name: r.Name, Namespace: r.Namespace, DryRun: r.DryRun,
		},
	}
	return review, r.Object, true
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
