package gather

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/doctor"
)

// LogReader reads the last lines of a container's log; previous asks for
// the run before the last restart, where a crash's cause is. Logs come from
// the kubelet, so this is an interface: tests without one supply their own.
type LogReader interface {
	TailLines(ctx context.Context, namespace, pod, container string, n int, previous bool) ([]string, error)
}

// logTimeout bounds one read: the API server proxies it to the kubelet,
// which may be unreachable.
const logTimeout = 5 * time.Second

// logLimitBytes keeps a runaway line from filling memory.
const logLimitBytes = 1 << 20

// KubeLogs reads logs through the API server (pods/log), as kubectl logs
// --tail N [--previous] does.
type KubeLogs struct{ Client kubernetes.Interface }

// TailLines implements LogReader.
func (k KubeLogs) TailLines(ctx context.Context, namespace, pod, container string, n int, previous bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, logTimeout)
	defer cancel()
	tail, limit := int64(n), int64(logLimitBytes)
	body, err := k.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, TailLines: &tail, Previous: previous, LimitBytes: &limit,
	}).DoRaw(ctx)
	if err != nil {
		// The API server answers a kubelet it cannot reach with a Status
		// whose message says why; client-go's error only says "unknown".
		var status metav1.Status
		if json.Unmarshal(body, &status) == nil && status.Message != "" {
			return nil, errors.New(status.Message)
		}
		return nil, err
	}
	text := strings.TrimRight(string(body), "\n")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}

// readLogs reads every container that has run: the previous run of one
// that terminated before (a crash), and the current run of one that is
// running or has terminated.
func readLogs(ctx context.Context, r LogReader, pod *corev1.Pod, n int) []doctor.ContainerLog {
	var out []doctor.ContainerLog
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, s := range statuses {
		if s.LastTerminationState.Terminated != nil {
			out = append(out, readOne(ctx, r, pod, s.Name, n, true))
		}
		if s.State.Running != nil || s.State.Terminated != nil {
			out = append(out, readOne(ctx, r, pod, s.Name, n, false))
		}
	}
	return out
}

func readOne(ctx context.Context, r LogReader, pod *corev1.Pod, container string, n int, previous bool) doctor.ContainerLog {
	l := doctor.ContainerLog{Container: container, Previous: previous}
	lines, err := r.TailLines(ctx, pod.Namespace, pod.Name, container, n, previous)
	if err != nil {
		l.Err = err.Error() // the check names the container
		return l
	}
	l.Lines = lines
	return l
}
