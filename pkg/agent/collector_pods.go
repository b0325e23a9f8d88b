package agent

import (
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuslice/gpuslice/pkg/cgroup"
)

// podsCollector attributes each GPU process's memory to its pod and
// container through /proc/PID/cgroup and the pods on this node, and
// reports what it cannot attribute by reason rather than dropping it.
type podsCollector struct {
	pods         PodLookup
	procRoot     string
	log          *slog.Logger
	podMemory    *prometheus.Desc
	unattributed *prometheus.Desc
	// warnedPID: a missing /proc entry is logged once with its fix; it
	// repeats on every scrape when hostPID is missing.
	warnedPID atomic.Bool
}

func newPodsCollector(pods PodLookup, procRoot string, log *slog.Logger, constLabels prometheus.Labels) *podsCollector {
	return &podsCollector{
		pods:     pods,
		procRoot: procRoot,
		log:      log,
		podMemory: prometheus.NewDesc(MetricPodGPUMemory,
			"GPU memory held by the processes of a container, per GPU (NVML's per-process usedGpuMemory, compute and graphics contexts).",
			[]string{LabelNamespace, LabelPod, LabelContainer, LabelGPU}, constLabels),
		unattributed: prometheus.NewDesc(MetricUnattributedMemory,
			"GPU memory held by processes that are not attributed to a pod, per GPU and reason: host-process, unknown-pod, pid-not-found, proc-unreadable.",
			[]string{LabelGPU, LabelReason}, constLabels),
	}
}

func (c *podsCollector) name() string { return "pods" }

func (c *podsCollector) describe(ch chan<- *prometheus.Desc) {
	ch <- c.podMemory
	ch <- c.unattributed
}

type containerKey struct {
	PodContainer
	gpu string
}

type reasonKey struct{ gpu, reason string }

// update fails (success 0) while the pod list is not synced: until then
// every pod process would show as unknown-pod.
func (c *podsCollector) update(ch chan<- prometheus.Metric, s *scrape) error {
	perContainer := map[containerKey]uint64{}
	unattributed := map[reasonKey]uint64{}
	for _, g := range s.gpus {
		gpuLabel := strconv.Itoa(g.Index)
		for _, reason := range Reasons {
			unattributed[reasonKey{gpuLabel, reason}] += 0
		}
		for _, p := range g.Processes {
			pc, reason := c.attribute(p.PID)
			if reason != "" {
				unattributed[reasonKey{gpuLabel, reason}] += p.UsedMemoryBytes
				continue
			}
			perContainer[containerKey{pc, gpuLabel}] += p.UsedMemoryBytes
		}
	}
	for k, v := range perContainer {
		ch <- prometheus.MustNewConstMetric(c.podMemory, prometheus.GaugeValue, float64(v), k.Namespace, k.Pod, k.Container, k.gpu)
	}
	for k, v := range unattributed {
		ch <- prometheus.MustNewConstMetric(c.unattributed, prometheus.GaugeValue, float64(v), k.gpu, k.reason)
	}
	if !c.pods.Synced() {
		return errors.New("pods on this node not listed yet")
	}
	return nil
}

// attribute returns the process's container, or the reason it has none.
func (c *podsCollector) attribute(pid uint32) (PodContainer, string) {
	ref, inPod, err := cgroup.ReadPID(c.procRoot, pid)
	switch {
	case errors.Is(err, cgroup.ErrNoProcess):
		if !c.warnedPID.Swap(true) {
			c.log.Warn("a GPU process has no entry under --proc-root; it is reported as pid-not-found. If this repeats, run the agent with hostPID: true: NVML reports PIDs as the host sees them",
				"pid", pid, "procRoot", c.procRoot)
		}
		return PodContainer{}, ReasonPIDNotFound
	case err != nil:
		c.log.Debug("reading a GPU process's cgroup", "pid", pid, "error", err.Error())
		return PodContainer{}, ReasonProcUnreadable
	case !inPod:
		return PodContainer{}, ReasonHostProcess
	}
	pc, ok := c.pods.Lookup(ref)
	if !ok {
		return PodContainer{}, ReasonUnknownPod
	}
	return pc, ""
}
