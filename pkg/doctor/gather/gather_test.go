package gather

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

func TestDoctorDialTarget(t *testing.T) {
	url := &doctor.WebhookEvidence{Config: registration.Build(registration.Options{URL: "https://127.0.0.1:9443/mutate"})}
	if addr, name := dialTarget(url); addr != "127.0.0.1:9443" || name != "127.0.0.1" {
		t.Errorf("URL: %q %q", addr, name)
	}
	noPort := &doctor.WebhookEvidence{Config: registration.Build(registration.Options{URL: "https://webhook.example.org/mutate"})}
	if addr, _ := dialTarget(noPort); addr != "webhook.example.org:443" {
		t.Errorf("URL without port: %q", addr)
	}

	// Service port 443 named https maps to the pods' 8443; the metrics
	// port of the same slice must not be picked.
	svc := &doctor.WebhookEvidence{
		Config: registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system"}),
		Service: &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "metrics", Port: 9090}, {Name: "https", Port: 443},
		}}},
		EndpointSlices: []discoveryv1.EndpointSlice{{
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}, {Name: ptr.To("https"), Port: ptr.To[int32](8443)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.42.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
				{Addresses: []string{"10.42.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			},
		}},
	}
	if addr, name := dialTarget(svc); addr != "10.42.0.5:8443" || name != "gpu-webhook.gpu-system.svc" {
		t.Errorf("Service: %q %q, want the ready endpoint at the https target port", addr, name)
	}
	svc.EndpointSlices[0].Endpoints[1].Conditions.Ready = ptr.To(false)
	if addr, _ := dialTarget(svc); addr != "" {
		t.Errorf("no ready endpoint: dialled %q", addr)
	}
	if addr, _ := dialTarget(&doctor.WebhookEvidence{}); addr != "" {
		t.Errorf("no registration: dialled %q", addr)
	}
}

func TestDoctorFlattenEvent(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	// What the scheduler writes through events.k8s.io/v1, read as core/v1.
	series := &corev1.Event{
		Reason: "FailedScheduling", Message: "0/1 nodes are available", Type: "Warning",
		EventTime: metav1.NewMicroTime(t0),
		Series:    &corev1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(t0.Add(time.Minute))},
	}
	if e := flatten(series); e.Count != 4 || !e.Last.Equal(t0.Add(time.Minute)) || e.Reason != "FailedScheduling" {
		t.Errorf("events.k8s.io event: %+v", e)
	}
	legacy := &corev1.Event{Reason: "FailedCreate", Count: 7, LastTimestamp: metav1.NewTime(t0)}
	if e := flatten(legacy); e.Count != 7 || !e.Last.Equal(t0) {
		t.Errorf("core/v1 event: %+v", e)
	}
}

type recordingReader struct{ asked []string }

func (r *recordingReader) TailLines(_ context.Context, _, _, container string, _ int, previous bool) ([]string, error) {
	key := container
	if previous {
		key += " --previous"
	}
	r.asked = append(r.asked, key)
	if container == "broken" {
		return nil, errors.New("container is waiting to start")
	}
	return []string{"line"}, nil
}

func TestDoctorReadLogs(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	crashed := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled"}}
	pod := &corev1.Pod{Status: corev1.PodStatus{
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "download", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "vllm", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, LastTerminationState: crashed},
			{Name: "proxy", State: running},
			{Name: "restarted", State: running, LastTerminationState: crashed},
			{Name: "creating", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			{Name: "broken", State: running},
		},
	}}
	r := &recordingReader{}
	logs := readLogs(context.Background(), r, pod, 10)
	want := []string{"download", "vllm --previous", "proxy", "restarted --previous", "restarted", "broken"}
	if !slices.Equal(r.asked, want) {
		t.Errorf("read %v, want %v", r.asked, want)
	}
	if last := logs[len(logs)-1]; last.Err != "container is waiting to start" || last.Lines != nil {
		t.Errorf("failed read: %+v", last)
	}
}

func TestDoctorUsesWebhook(t *testing.T) {
	tmpl := func(ann map[string]string) *doctor.WorkloadEvidence {
		return &doctor.WorkloadEvidence{Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}}
	}
	for _, tc := range []struct {
		w    *doctor.WorkloadEvidence
		want bool
	}{
		{w: tmpl(map[string]string{"gpu-directories": "nvidia"}), want: true},
		{w: tmpl(map[string]string{"gpu-shares": "2"}), want: true},
		{w: tmpl(nil), want: false},
		{w: &doctor.WorkloadEvidence{Pods: []doctor.PodEvidence{{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"gpu-directories": "nvidia"}}}}}}, want: true},
	} {
		if got := usesWebhook(tc.w); got != tc.want {
			t.Errorf("usesWebhook(%+v) = %v", tc.w, got)
		}
	}
	workloads := []doctor.WorkloadEvidence{{Namespace: "ai", Template: &corev1.PodTemplateSpec{}}, {Namespace: "media", Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"gpu-directories": "nvidia"}}}}}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{o: Options{ProbeNamespace: "lab", Namespace: "ai"}, want: "lab"},
		{o: Options{Namespace: "ai"}, want: "ai"},
		{o: Options{}, want: "media"},
	} {
		if got := probeNamespace(&tc.o, workloads); got != tc.want {
			t.Errorf("probeNamespace(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
	if got := probeNamespace(&Options{}, nil); got != "default" {
		t.Errorf("no workloads: %q", got)
	}
}
