package doctor

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/podenv"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// vLLM settings the seed tunes (section "Reducing vLLM GPU Memory").
const (
	EnvMaxModelLen = "MAX_MODEL_LEN"
	EnvModel       = "MODEL"
)

// MemorySettings are a GPU workload's memory knobs, as found in its env,
// ConfigMaps or vLLM arguments; empty when not set.
type MemorySettings struct {
	Utilization, UtilizationFrom string
	MaxModelLen, MaxModelLenFrom string
	Model                        string
}

// memorySettings reads the knobs from the pod's GPU containers.
func (ev *Evidence) memorySettings(pod *corev1.Pod) MemorySettings {
	var m MemorySettings
	containers, _ := gpuContainers(pod)
	configMaps := podenv.InList(pod.Namespace, ev.ConfigMaps)
	for _, c := range containers {
		if s, ok := podenv.Lookup(pod.Namespace, c, configMaps, workload.EnvGPUMemoryUtilization); ok && m.Utilization == "" {
			m.Utilization, m.UtilizationFrom = s.Value, s.From
		}
		if s, ok := podenv.Lookup(pod.Namespace, c, configMaps, EnvMaxModelLen); ok && m.MaxModelLen == "" {
			m.MaxModelLen, m.MaxModelLenFrom = s.Value, s.From
		}
		if s, ok := podenv.Lookup(pod.Namespace, c, configMaps, EnvModel); ok && m.Model == "" {
			m.Model = s.Value
		}
		// vLLM's own flags win over what the image's entrypoint reads,
		// unless they only refer to the env ("$(GPU_MEMORY_UTILIZATION)",
		// as the examples write them): then the env's value and source
		// found above are the ones to tune.
		args := append(append([]string{}, c.Command...), c.Args...)
		if v := flagValue(args, "--gpu-memory-utilization"); v != "" {
			m.Utilization, m.UtilizationFrom = v, "--gpu-memory-utilization of container "+c.Name
		}
		if v := flagValue(args, "--max-model-len"); v != "" {
			m.MaxModelLen, m.MaxModelLenFrom = v, "--max-model-len of container "+c.Name
		}
	}
	return m
}

// flagValue finds --flag=value or --flag value in a command line.
// A value that is a $(VAR) reference counts as unset.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, flag+"=")
		if !ok && a == flag && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			if strings.Contains(v, "$(") {
				return ""
			}
			return v
		}
	}
	return ""
}

// MemoryAdvice is the seed's "CUDA Out of Memory" solutions with this
// workload's numbers: lower GPU_MEMORY_UTILIZATION (0.70 → 0.60), a smaller
// model, MAX_MODEL_LEN (8192 → 4096), and the node's other workloads.
func MemoryAdvice(m MemorySettings, node *ledger.NodeReport) string {
	steps := []string{lowerUtilization(m), smallerModel(m), lowerMaxModelLen(m), otherWorkloads(node)}
	for i := range steps {
		steps[i] = fmt.Sprintf("%d) %s", i+1, steps[i])
	}
	return strings.Join(steps, "; ")
}

func lowerUtilization(m MemorySettings) string {
	u, err := strconv.ParseFloat(m.Utilization, 64)
	if err != nil || u <= 0.1 {
		return "lower GPU_MEMORY_UTILIZATION (e.g. 0.70 → 0.60) and restart (kubectl rollout restart)"
	}
	return fmt.Sprintf("lower GPU_MEMORY_UTILIZATION %s → %.2f (%s) and restart (kubectl rollout restart)", m.Utilization, u-0.1, m.UtilizationFrom)
}

func smallerModel(m MemorySettings) string {
	if m.Model == "" {
		return "use a smaller or more quantized model"
	}
	return fmt.Sprintf("use a smaller or more quantized model than %s", m.Model)
}

func lowerMaxModelLen(m MemorySettings) string {
	n, err := strconv.Atoi(m.MaxModelLen)
	if err != nil || n < 512 {
		return "reduce MAX_MODEL_LEN (e.g. 8192 → 4096)"
	}
	return fmt.Sprintf("reduce MAX_MODEL_LEN %d → %d (%s)", n, n/2, m.MaxModelLenFrom)
}

// otherWorkloads is the seed's "check other GPU workloads' memory usage",
// answered from the VRAM ledger.
func otherWorkloads(n *ledger.NodeReport) string {
	if n == nil {
		return "check other GPU workloads' memory use (gpuslice status)"
	}
	var parts []string
	for _, w := range n.Workloads {
		if w.Memory != nil {
			parts = append(parts, fmt.Sprintf("%s/%s %s", w.Namespace, w.Name, w.Memory.String()))
		}
	}
	s := fmt.Sprintf("check other GPU workloads' memory on %s: expected %s", n.Name, formatVRAM(n.VRAM))
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s + "; measure with nvidia-smi or DCGM"
}

// formatVRAM writes "13.9Gi-18.4Gi of 12Gi" through the ledger's own
// formatting.
func formatVRAM(v ledger.VRAMSummary) string {
	s := (ledger.MemoryRange{Min: *resource.NewQuantity(v.MinBytes, resource.BinarySI), Max: *resource.NewQuantity(v.MaxBytes, resource.BinarySI)}).String()
	if v.AvailableBytes > 0 {
		avail := *resource.NewQuantity(v.AvailableBytes, resource.BinarySI)
		s += " of " + (ledger.MemoryRange{Min: avail, Max: avail}).String()
	}
	return s
}

// Container waiting reasons that keep a pod from ever running.
var badWaiting = map[string]string{
	"ImagePullBackOff":           "check the image name and that the node can pull it",
	"ErrImagePull":               "check the image name and that the node can pull it",
	"InvalidImageName":           "fix the image name",
	"CreateContainerConfigError": "create the ConfigMap or Secret the message names, or fix the reference",
	"CreateContainerError":       "read the message: kubectl describe pod",
	"RunContainerError":          "if it names the nvidia runtime, install the NVIDIA container toolkit on the node and configure containerd's nvidia runtime (K3s: restart k3s after installing the toolkit)",
}

// JudgeCrash judges the seed's "Pod pending or CrashLoopBackOff" and
// OOMKilled: container states and the last termination.
func JudgeCrash(in *PodInput) Result {
	pod := in.Pod
	res := Result{Check: CheckCrash, Object: "pod/" + pod.Name, Verdict: OK}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	if len(statuses) == 0 {
		res.Evidence = fmt.Sprintf("no container has started (phase %s)", orNone(string(pod.Status.Phase)))
		return res
	}
	var evidence, remedies []string
	set := func(v Verdict, ev, remedy string) {
		if v.worse(res.Verdict) {
			res.Verdict = v
		}
		evidence = append(evidence, ev)
		if remedy != "" {
			remedies = append(remedies, remedy)
		}
	}
	running := 0
	for _, s := range statuses {
		last := s.LastTerminationState.Terminated
		now := s.State.Terminated
		oom := (last != nil && last.Reason == "OOMKilled") || (now != nil && now.Reason == "OOMKilled")
		switch {
		case oom:
			set(Fail, fmt.Sprintf("container %s was OOMKilled%s", s.Name, crashDetail(s)), oomKilledRemedy(pod, s.Name, in.Memory, in.Node))
		case s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff":
			set(Fail, fmt.Sprintf("container %s is in CrashLoopBackOff%s", s.Name, crashDetail(s)),
				fmt.Sprintf("read why it exits: kubectl logs -n %s %s -c %s --previous (cuda-oom reads it for CUDA out of memory)", pod.Namespace, pod.Name, s.Name))
		case s.State.Waiting != nil && badWaiting[s.State.Waiting.Reason] != "":
			w := s.State.Waiting
			set(Fail, fmt.Sprintf("container %s is waiting: %s: %s", s.Name, w.Reason, w.Message), badWaiting[w.Reason])
		case s.RestartCount > 0:
			set(Warn, fmt.Sprintf("container %s restarted %d time(s)%s", s.Name, s.RestartCount, lastExit(last)),
				fmt.Sprintf("kubectl logs -n %s %s -c %s --previous", pod.Namespace, pod.Name, s.Name))
		case s.State.Running != nil:
			running++
		}
	}
	if len(evidence) == 0 {
		res.Evidence = fmt.Sprintf("%d of %d container(s) running, no restarts", running, len(statuses))
		return res
	}
	res.Evidence = strings.Join(evidence, "; ")
	res.Remedy = strings.Join(remedies, "; ")
	return res
}

func crashDetail(s corev1.ContainerStatus) string {
	d := fmt.Sprintf(" (%d restart(s)%s", s.RestartCount, lastExit(s.LastTerminationState.Terminated))
	if s.State.Waiting != nil && s.State.Waiting.Reason != "" {
		d += ", now " + s.State.Waiting.Reason
	}
	return d + ")"
}

func lastExit(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf(", last exit %s code %d", orNone(t.Reason), t.ExitCode)
}

// oomKilledRemedy: OOMKilled is the kernel enforcing the container's
// memory limit, host RAM rather than VRAM, so the limit comes first; vLLM
// also stages the model in RAM, so the seed's memory advice follows.
func oomKilledRemedy(pod *corev1.Pod, container string, m MemorySettings, node *ledger.NodeReport) string {
	limit := "no limit: the node ran out of memory"
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && c.Name == container {
			limit = "limit " + q.String()
		}
	}
	return fmt.Sprintf("the kernel killed it for host memory (%s), not VRAM: raise resources.limits.memory or load less; then the seed's memory advice: %s",
		limit, MemoryAdvice(m, node))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// LogFinding is a line of a log that explains a crash.
type LogFinding struct {
	Kind string // FindingCUDAOOM or FindingKVCache
	Line string
}

// Kinds of log findings.
const (
	FindingCUDAOOM = "cuda-oom"
	FindingKVCache = "kv-cache"
)

// logPatterns are what PyTorch, vLLM and llama.cpp (Ollama) print when GPU
// memory runs out. They are exact phrases: "out of memory" alone also
// matches the JVM and the kernel's OOM killer, which are not about VRAM.
var logPatterns = []struct {
	kind string
	re   *regexp.Regexp
}{
	{FindingCUDAOOM, regexp.MustCompile(`torch\.(cuda\.)?OutOfMemoryError`)},
	{FindingCUDAOOM, regexp.MustCompile(`CUDA out of memory\. Tried to allocate`)},
	{FindingCUDAOOM, regexp.MustCompile(`CUDA error: out of memory`)},
	{FindingCUDAOOM, regexp.MustCompile(`cudaMalloc failed: out of memory`)},
	{FindingCUDAOOM, regexp.MustCompile(`CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation`)},
	{FindingKVCache, regexp.MustCompile(`larger than the maximum number of tokens that can be stored in KV cache`)},
	{FindingKVCache, regexp.MustCompile(`No available memory for the cache blocks`)},
}

// DetectLogProblems returns the lines of a log tail that show GPU memory
// running out, first match of each line only.
func DetectLogProblems(lines []string) []LogFinding {
	var out []LogFinding
	for _, line := range lines {
		for _, p := range logPatterns {
			if p.re.MatchString(line) {
				out = append(out, LogFinding{Kind: p.kind, Line: strings.TrimSpace(line)})
				break
			}
		}
	}
	return out
}

// JudgeCUDAOOM judges the seed's "vLLM crashes with CUDA OOM error" from
// the tails of the pod's logs. Logs that could not be read are a warning:
// the check could not be made, nothing is known to be wrong.
func JudgeCUDAOOM(in *PodInput) Result {
	m, node := in.Memory, in.Node
	res := Result{Check: CheckCUDAOOM, Object: "pod/" + in.Pod.Name, Verdict: OK}
	if len(in.Logs) == 0 {
		res.Evidence = "no container has run yet: no log to read"
		return res
	}
	var read, unavailable []string
	previous := ""
	for _, l := range in.Logs {
		if l.Previous {
			previous = " --previous"
		}
		which := l.Container
		if l.Previous {
			which += " (previous run)"
		}
		if l.Err != "" {
			unavailable = append(unavailable, which+": "+l.Err)
			continue
		}
		if found := DetectLogProblems(l.Lines); len(found) > 0 {
			f := found[len(found)-1] // the last one is what ended the run
			res.Verdict = Fail
			res.Evidence = fmt.Sprintf("%s log: %s", which, truncate(f.Line, 240))
			if f.Kind == FindingKVCache {
				res.Remedy = "vLLM's KV cache does not fit what it was given: " + lowerMaxModelLen(m) + ", or raise GPU_MEMORY_UTILIZATION only if " + otherWorkloads(node)
			} else {
				res.Remedy = "CUDA out of memory: " + MemoryAdvice(m, node)
			}
			return res
		}
		read = append(read, fmt.Sprintf("%d line(s) of %s", len(l.Lines), which))
	}
	if len(unavailable) > 0 {
		res.Verdict = Warn
		res.Evidence = "logs unavailable: " + strings.Join(unavailable, "; ")
		if len(read) > 0 {
			res.Evidence += "; no CUDA out of memory in " + strings.Join(read, ", ")
		}
		res.Remedy = fmt.Sprintf("read them where the kubelet answers: kubectl logs -n %s %s%s | grep -i 'out of memory'", in.Pod.Namespace, in.Pod.Name, previous)
		return res
	}
	res.Evidence = "no CUDA out of memory in the last " + strings.Join(read, ", ")
	return res
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
