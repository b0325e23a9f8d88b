// Package admit is `gpuslice admit`: whether the workloads of a manifest
// can start now, for deploy scripts, answered by the admission gate's own
// decision (gate.DecideFor) with the exit codes of the cluster owner's
// check-gpu-admission.sh. It is pure: reading manifests and judging them
// against a clusterview.Cluster the caller listed.
package admit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// KindPod is the kind a manifest may hold besides workload.KindDeployment,
// workload.KindStatefulSet, workload.KindJob and workload.KindCronJob.
const KindPod = "Pod"

// Target is one workload of a manifest, as admit judges it.
type Target struct {
	Workload workload.Ref `json:"workload"`
	// Source is where it was read: "FILE, document N".
	Source string `json:"source"`
	// Annotations are the workload's own (for a Pod, the pod's): its
	// arbitration policy.
	Annotations map[string]string `json:"-"`
	// Template is the pod it starts.
	Template corev1.PodTemplateSpec `json:"-"`
	// Pods is how many such pods start at once: replicas, a Job's
	// parallelism, 1 for a Pod.
	Pods int32 `json:"pods"`
}

// Skipped is a document that starts no pods (a ConfigMap, a Namespace...).
type Skipped struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Source string `json:"source"`
}

// Read reads every document of a YAML (or JSON) stream: the workloads to
// judge, in order, and the documents that are none. Objects without a
// namespace are in namespace. source names the stream in errors.
func Read(r io.Reader, source, namespace string) ([]Target, []Skipped, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var targets []Target
	var skipped []Skipped
	for doc := 1; ; doc++ {
		var raw map[string]any
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		where := fmt.Sprintf("%s, document %d", source, doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not YAML or JSON: %w", where, err)
		}
		if len(raw) == 0 {
			continue // an empty document, as between two "---"
		}
		data, err := yaml.Marshal(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil || tm.Kind == "" {
			return nil, nil, fmt.Errorf("%s: no kind: every document needs apiVersion and kind", where)
		}
		t, ok, err := target(tm.Kind, data, where, namespace)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			var om struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			_ = yaml.Unmarshal(data, &om)
			skipped = append(skipped, Skipped{Kind: tm.Kind, Name: om.Metadata.Name, Source: where})
			continue
		}
		targets = append(targets, t)
	}
	return targets, skipped, nil
}

// target decodes a workload document; ok is false for other kinds.
func target(kind string, data []byte, where, namespace string) (Target, bool, error) {
	var meta metav1.ObjectMeta
	var t Target
	decode := func(obj any) error {
		if err := yaml.UnmarshalStrict(data, obj); err != nil {
			return fmt.Errorf("%s: %s: %w", where, kind, err)
		}
		return nil
	}
	switch kind {
	case workload.KindDeployment:
		var d appsv1.Deployment
		if err := decode(&d); err != nil {
			return t, false, err
		}
		meta, t.Template, t.Pods = d.ObjectMeta, d.Spec.Template, replicas(d.Spec.Replicas)
	case workload.KindStatefulSet:
		var s appsv1.StatefulSet
		if err := decode(&s); err != nil {
			return t, false, err
		}
		meta, t.Template, t.Pods = s.ObjectMeta, s.Spec.Template, replicas(s.Spec.Replicas)
	case workload.KindJob:
		var j batchv1.Job
		if err := decode(&j); err != nil {
			return t, false, err
		}
		meta, t.Template, t.Pods = j.ObjectMeta, j.Spec.Template, replicas(j.Spec.Parallelism)
	case workload.KindCronJob:
		var c batchv1.CronJob
		if err := decode(&c); err != nil {
			return t, false, err
		}
		meta, t.Template, t.Pods = c.ObjectMeta, c.Spec.JobTemplate.Spec.Template, replicas(c.Spec.JobTemplate.Spec.Parallelism)
	case KindPod:
		var p corev1.Pod
		if err := decode(&p); err != nil {
			return t, false, err
		}
		meta, t.Pods = p.ObjectMeta, 1
		t.Template = corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
	default:
		return t, false, nil
	}
	if meta.Name == "" {
		return t, false, fmt.Errorf("%s: %s without metadata.name", where, kind)
	}
	if meta.Namespace == "" {
		meta.Namespace = namespace
	}
	t.Workload = workload.Ref{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}
	t.Source, t.Annotations = where, meta.Annotations
	return t, true, nil
}

// replicas is a replica count or parallelism as the API server defaults it.
func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

// ReadAll reads the manifests names with read ("-" being standard
// input, as kubectl's -f).
func ReadAll(names []string, read func(name string) ([]byte, error), namespace string) ([]Target, []Skipped, error) {
	var targets []Target
	var skipped []Skipped
	for _, name := range names {
		data, err := read(name)
		if err != nil {
			return nil, nil, err
		}
		source := name
		if name == "-" {
			source = "standard input"
		}
		t, s, err := Read(bytes.NewReader(data), source, namespace)
		if err != nil {
			return nil, nil, err
		}
		targets, skipped = append(targets, t...), append(skipped, s...)
	}
	if len(targets) == 0 {
		return nil, skipped, fmt.Errorf("%s: no Deployment, StatefulSet, Job, CronJob or Pod: nothing to admit", strings.Join(names, ", "))
	}
	return targets, skipped, nil
}
