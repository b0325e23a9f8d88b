package live

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/seed/gatecluster"
	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// fixed is a cluster the informers would have listed.
type fixed struct {
	c      *clusterview.Cluster
	synced bool
}

func (f fixed) Synced() (bool, string) {
	if !f.synced {
		return false, "still listing the cluster's nodes, pods and workloads"
	}
	return true, ""
}

func (f fixed) Cluster() (*clusterview.Cluster, error) {
	c := *f.c
	return &c, nil
}

func withBreakGlass(p *corev1.Pod) *corev1.Pod {
	p.Annotations[workload.AnnotationBreakGlass] = "board demo"
	return p
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		name   string
		synced bool
		pod    func(c *gatecluster.Cluster) *corev1.Pod
		dryRun bool
		// wantMessage is empty when the pod is allowed.
		wantMessage  string
		wantWorkload string
		wantEvent    string
	}{
		{
			name: "Plex not Ready", synced: true,
			pod:          func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantMessage:  "media/plex is unhealthy on homelabai (0 of 1 pod(s) Ready)",
			wantWorkload: "deployment ai-dev/vllm-server",
		},
		{
			name: "break-glass: allowed, evented on the Deployment", synced: true,
			pod:          func(c *gatecluster.Cluster) *corev1.Pod { return withBreakGlass(c.NewPod("ai-dev", "vllm-server")) },
			wantWorkload: "deployment ai-dev/vllm-server",
			wantEvent:    `Warning BreakGlass pod vllm-server-5d9c-* admitted past the admission gate with gpuslice.io/break-glass="board demo": admission gate: preemptible deployment ai-dev/vllm-server may not start new pods: protected deployment media/plex is unhealthy`,
		},
		{
			name: "break-glass on a dry run: no Event", synced: true, dryRun: true,
			pod:          func(c *gatecluster.Cluster) *corev1.Pod { return withBreakGlass(c.NewPod("ai-dev", "vllm-server")) },
			wantWorkload: "deployment ai-dev/vllm-server",
		},
		{
			name: "break-glass on a pod without a controller: no Event", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				return withBreakGlass(&corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", Name: "scratch", Annotations: map[string]string{workload.AnnotationPreemptible: "true"}},
					Spec:       gatecluster.PodSpec("", 1, "homelabai"),
				})
			},
			wantWorkload: "pod ai-dev/scratch",
		},
		{
			name:         "not listed yet",
			pod:          func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantMessage:  "still listing the cluster's nodes, pods and workloads",
			wantWorkload: "pod ai-dev/vllm-server-5d9c-*", // no owner found: the pod itself
		},
		{
			name: "ReplicaSet not in the cache yet", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.OwnerReferences[0].Name = "vllm-server-new"
				return p
			},
			wantMessage:  "ReplicaSet ai-dev/vllm-server-new, this pod's owner, is not in the gate's cache after 50ms; the pod's controller retries",
			wantWorkload: "pod ai-dev/vllm-server-5d9c-*", // no owner found: the pod itself
		},
		{
			name: "Deployment not in the cache yet", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				c.Deployments = c.Deployments[:len(c.Deployments)-1] // vLLM's
				return p
			},
			wantMessage:  "Deployment ai-dev/vllm-server, this pod's owner",
			wantWorkload: "pod ai-dev/vllm-server-5d9c-*", // no owner found: the pod itself
		},
		{
			name: "a CronJob's Job not in the cache yet", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				return jobPod("nightly-training-1")
			},
			wantMessage:  "Job ai/nightly-training-1, this pod's owner, is not in the gate's cache",
			wantWorkload: "pod ai/nightly-training-1-*", // no owner found: the pod itself
		},
		{
			name: "the Job's CronJob not in the cache yet", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				c.Jobs = append(c.Jobs, batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "nightly-training-1",
					OwnerReferences: []metav1.OwnerReference{{Kind: workload.KindCronJob, Name: "nightly-training", Controller: ptr.To(true)}}}})
				return jobPod("nightly-training-1")
			},
			wantMessage:  "CronJob ai/nightly-training, this pod's owner",
			wantWorkload: "pod ai/nightly-training-1-*", // no owner found: the pod itself
		},
		{
			name: "a preemptible CronJob's pod is gated by the CronJob's policy", synced: true,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				cj := seed.TrainingCronJob("ai", "nightly-training")
				c.CronJobs = append(c.CronJobs, *cj)
				c.Jobs = append(c.Jobs, batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "nightly-training-1",
					OwnerReferences: []metav1.OwnerReference{{Kind: workload.KindCronJob, Name: cj.Name, Controller: ptr.To(true)}}}})
				p := jobPod("nightly-training-1")
				p.Spec = *cj.Spec.JobTemplate.Spec.Template.Spec.DeepCopy()
				return p
			},
			wantMessage:  "admission gate: preemptible cronjob ai/nightly-training may not start new pods: protected deployment media/plex is unhealthy",
			wantWorkload: "cronjob ai/nightly-training",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gatecluster.Homelab()
			c.PlexNotReady()
			pod := tt.pod(c)
			events := record.NewFakeRecorder(10)
			g := &Gate{opts: Options{OwnerWait: 50 * time.Millisecond}, source: fixed{&c.Cluster, tt.synced}, recorder: events}
			r := g.Admit(context.Background(), pod, tt.dryRun)
			if r.Allowed != (tt.wantMessage == "") || !strings.Contains(r.Message, tt.wantMessage) || r.Workload.Qualified() != tt.wantWorkload {
				t.Errorf("allowed %v, workload %q: %s\nwant message %q, workload %q", r.Allowed, r.Workload.Qualified(), r.Message, tt.wantMessage, tt.wantWorkload)
			}
			select {
			case e := <-events.Events:
				if tt.wantEvent == "" || !strings.HasPrefix(e, tt.wantEvent) {
					t.Errorf("event %q, want %q", e, tt.wantEvent)
				}
			default:
				if tt.wantEvent != "" {
					t.Errorf("no event, want %q", tt.wantEvent)
				}
			}
		})
	}
}

// jobPod is a pod as the Job controller creates it for job.
func jobPod(job string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ai", GenerateName: job + "-", Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: workload.KindJob, Name: job, Controller: ptr.To(true)}}},
		Spec: gatecluster.PodSpec("", 1, "homelabai"),
	}
}

// counting is a fixed cluster that counts the copies taken of it.
type counting struct {
	fixed
	copies int
}

func (c *counting) Cluster() (*clusterview.Cluster, error) {
	c.copies++
	return c.fixed.Cluster()
}

// TestAdmitCopiesOnlyAfterAChange: admissions share one copy of the
// cluster until an informer reports a change.
func TestAdmitCopiesOnlyAfterAChange(t *testing.T) {
	c := gatecluster.Homelab()
	src := &counting{fixed: fixed{&c.Cluster, true}}
	g := &Gate{opts: Options{OwnerWait: 50 * time.Millisecond}, source: src, recorder: record.NewFakeRecorder(10)}
	admit := func() {
		t.Helper()
		if r := g.Admit(context.Background(), c.NewPod("ai-dev", "vllm-server"), true); !r.Allowed {
			t.Fatalf("refused: %s", r.Message)
		}
	}
	for range 3 {
		admit()
	}
	if src.copies != 1 {
		t.Errorf("3 admissions without a change copied the cluster %d times, want 1", src.copies)
	}
	g.changes.Add(1) // what the informers' event handler does
	admit()
	admit()
	if src.copies != 2 {
		t.Errorf("after one change: %d copies, want 2", src.copies)
	}
}
