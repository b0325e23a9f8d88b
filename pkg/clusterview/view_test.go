package clusterview

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestRead(t *testing.T) {
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "homelabai", Labels: map[string]string{"kubernetes.io/hostname": "homelabai"}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}, Allocatable: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}}}
	dep := func(name string, ann map[string]string, replicas int32) appsv1.Deployment {
		d := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: name, Annotations: ann}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas)}}
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelabai"}
		d.Spec.Template.Annotations = map[string]string{"gpu-memory": "4Gi"}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("1")}}}}
		return d
	}
	pending := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "ollama-x", OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "ollama-1", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "homelabai"}}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	rs := appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "ollama-1", OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "ollama", Controller: ptr.To(true)}}}}
	c := &Cluster{
		Input: ledger.Input{Nodes: []corev1.Node{node}, Pods: []corev1.Pod{pending}, ReplicaSets: []appsv1.ReplicaSet{rs}},
		Deployments: []appsv1.Deployment{
			dep("ollama", map[string]string{workload.AnnotationPreemptible: "true"}, 1),
			dep("released", map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationReleasedReplicas: "3", workload.AnnotationReleasedNode: "homelabai", workload.AnnotationReleasedBy: "gpuslice-arbiter"}, 0),
			dep("broken", map[string]string{workload.AnnotationPreemptible: "maybe"}, 1),
			dep("unmanaged", nil, 1),
		},
		Classes: policy.PriorityClasses{},
	}
	v, err := Read(c, Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Workloads) != 2 || len(v.Invalid) != 1 || !strings.Contains(v.Invalid[0].Err.Error(), `"maybe"`) {
		t.Fatalf("workloads %d, invalid %+v", len(v.Workloads), v.Invalid)
	}
	ollama, released := v.Workloads[0], v.Workloads[1]
	if len(ollama.Pods) != 1 || !ollama.OnNode("homelabai") || ollama.Ready != 0 || ollama.Memory == nil || ollama.Memory.Max.String() != "4Gi" {
		t.Errorf("ollama: pods %d, nodes %v, ready %d, memory %v", len(ollama.Pods), ollama.Nodes, ollama.Ready, ollama.Memory)
	}
	if ok, why := ollama.Healthy(); ok || why != "0 of 1 pod(s) Running" {
		t.Errorf("ollama healthy = %v %q", ok, why)
	}
	if released.Record == nil || released.Record.Replicas != 3 || !released.OnNode("homelabai") || !released.PodsGone() {
		t.Errorf("released: %+v on %v", released.Record, released.Nodes)
	}
}

func TestReadCronJob(t *testing.T) {
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "homelabai", Labels: map[string]string{"kubernetes.io/hostname": "homelabai"}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}, Allocatable: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("8")}}}
	cronJob := func(suspend bool, ann map[string]string) batchv1.CronJob {
		cj := batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "nightly-training", UID: "cj-uid", Annotations: ann},
			Spec: batchv1.CronJobSpec{Schedule: "0 2 * * *", Suspend: ptr.To(suspend)}}
		tmpl := &cj.Spec.JobTemplate.Spec.Template
		tmpl.Annotations = map[string]string{"gpu-memory": "6Gi"}
		tmpl.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelabai"}
		tmpl.Spec.Containers = []corev1.Container{{Name: "train", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("2")}}}}
		return cj
	}
	ownedBy := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: ptr.To(true)}}
	}
	job := func(name string, mod func(*batchv1.Job)) batchv1.Job {
		j := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: name, OwnerReferences: ownedBy("CronJob", "nightly-training")}}
		if mod != nil {
			mod(&j)
		}
		return j
	}
	pod := func(name, jobName string, phase corev1.PodPhase) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: name, OwnerReferences: ownedBy("Job", jobName)},
			Spec:   corev1.PodSpec{NodeName: "homelabai"},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	}
	complete := func(j *batchv1.Job) {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	}
	policyAnn := map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationActiveHours: "01:00-06:00"}
	for _, tc := range []struct {
		name          string
		cronJob       batchv1.CronJob
		jobs          []batchv1.Job
		pods          []corev1.Pod
		wantInvalid   string // part of the policy error; "" for a valid workload
		wantReplicas  int32
		wantReady     int32
		wantPods      int
		wantSchedules bool
		wantNodes     []string
	}{
		{
			name: "scheduling, no Job yet: may land on the GPU node", cronJob: cronJob(false, policyAnn),
			wantSchedules: true, wantNodes: []string{"homelabai"},
		},
		{
			name: "a running Job's pods are the CronJob's; finished Jobs and pods are not", cronJob: cronJob(false, policyAnn),
			jobs: []batchv1.Job{
				job("nightly-training-1", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](2) }),
				job("nightly-training-0", complete),
			},
			pods: []corev1.Pod{
				pod("a", "nightly-training-1", corev1.PodRunning), pod("b", "nightly-training-1", corev1.PodRunning),
				pod("old", "nightly-training-0", corev1.PodSucceeded),
			},
			wantReplicas: 2, wantReady: 2, wantPods: 2, wantSchedules: true, wantNodes: []string{"homelabai"},
		},
		{
			name: "parallelism bounded by the completions still lacking", cronJob: cronJob(false, policyAnn),
			jobs: []batchv1.Job{job("nightly-training-1", func(j *batchv1.Job) {
				j.Spec.Parallelism, j.Spec.Completions, j.Status.Succeeded = ptr.To[int32](4), ptr.To[int32](5), 4
			})},
			wantReplicas: 1, wantSchedules: true, wantNodes: []string{"homelabai"},
		},
		{
			name: "suspended with a suspended Job: wants no pods, on no node", cronJob: cronJob(true, policyAnn),
			jobs: []batchv1.Job{job("nightly-training-1", func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(true) })},
		},
		{
			name: "suspended by hand, its Job still running", cronJob: cronJob(true, policyAnn),
			jobs:         []batchv1.Job{job("nightly-training-1", nil)},
			pods:         []corev1.Pod{pod("a", "nightly-training-1", corev1.PodRunning)},
			wantReplicas: 1, wantReady: 1, wantPods: 1, wantNodes: []string{"homelabai"},
		},
		{
			name: "lower-memory is refused", cronJob: cronJob(false, map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPreemptAction: "lower-memory=0.30"}),
			wantInvalid: `gpuslice.io/preempt-action="lower-memory=0.30": a CronJob is preempted by suspending it`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{Input: ledger.Input{Nodes: []corev1.Node{node}, Pods: tc.pods, Jobs: tc.jobs}, CronJobs: []batchv1.CronJob{tc.cronJob}, Classes: policy.PriorityClasses{}}
			v, err := Read(c, Options{Zone: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantInvalid != "" {
				if len(v.Workloads) != 0 || len(v.Invalid) != 1 || !strings.Contains(v.Invalid[0].Err.Error(), tc.wantInvalid) {
					t.Fatalf("workloads %d, invalid %+v; want the error %q", len(v.Workloads), v.Invalid, tc.wantInvalid)
				}
				return
			}
			ref := workload.Ref{Kind: workload.KindCronJob, Namespace: "ai", Name: "nightly-training"}
			w := v.Find(ref)
			if w == nil {
				t.Fatalf("no workload %s (invalid %+v)", ref.Qualified(), v.Invalid)
			}
			if w.Replicas != tc.wantReplicas || w.Ready != tc.wantReady || len(w.Pods) != tc.wantPods || w.Schedules != tc.wantSchedules || !slices.Equal(w.Nodes, tc.wantNodes) {
				t.Errorf("replicas %d ready %d pods %d schedules %v nodes %v; want %d %d %d %v %v",
					w.Replicas, w.Ready, len(w.Pods), w.Schedules, w.Nodes, tc.wantReplicas, tc.wantReady, tc.wantPods, tc.wantSchedules, tc.wantNodes)
			}
			if w.Runs() != (tc.wantReplicas > 0 || tc.wantSchedules) {
				t.Errorf("Runs() = %v", w.Runs())
			}
			if w.Memory == nil || w.Memory.Max.String() != "6Gi" || w.Policy.Hours == nil {
				t.Errorf("memory %v, hours %v", w.Memory, w.Policy.Hours)
			}
			if c.Object(ref) == nil {
				t.Error("Cluster.Object does not find the CronJob")
			}
		})
	}
}
