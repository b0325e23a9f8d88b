package realnode

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
)

// waitRunning waits until the pod's containers all run, failing early with
// its events when it cannot.
func waitRunning(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := n.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod %s/%s ended: %s %s", ns, name, p.Status.Reason, p.Status.Message)
		}
		if p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Running == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s never ran: %v; its events: %s", ns, name, err, n.Events(ctx, ns, name))
	}
	return pod
}

// execIn runs a command in a pod's container through the API server and
// the kubelet, as kubectl exec does.
func execIn(ctx context.Context, t *testing.T, n *rn.RealNode, pod *corev1.Pod, command ...string) string {
	t.Helper()
	req := n.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: pod.Spec.Containers[0].Name, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(n.Config, "POST", req.URL())
	if err != nil {
		t.Fatalf("exec in %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatalf("exec %v in %s/%s: %v (stderr: %s)", command, pod.Namespace, pod.Name, err, stderr.String())
	}
	return stdout.String()
}

// deviceLines is what testbox devices prints for the fake GPU's nodes as
// the host has them.
func deviceLines(present bool) string {
	var b strings.Builder
	for _, d := range rn.FakeDevices {
		if present {
			fmt.Fprintf(&b, "%s char %d:%d\n", d.Path, d.Major, d.Minor)
		} else {
			fmt.Fprintf(&b, "%s missing\n", d.Path)
		}
	}
	return b.String()
}

func devicePaths() []string {
	var out []string
	for _, d := range rn.FakeDevices {
		out = append(out, d.Path)
	}
	return out
}
