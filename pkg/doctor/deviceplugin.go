package doctor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/podstatus"
)

// Checks of the NVIDIA device plugin, one row per GPU node.
const (
	CheckDevicePluginPod       = "device-plugin-pod"
	CheckDevicePluginConfig    = "device-plugin-config"
	CheckDevicePluginResources = "device-plugin-resources"
)

// Names the device plugin check reads.
const (
	// LabelGPUPresent is GPU Feature Discovery's label on GPU nodes: a
	// node with it is a GPU node even when nothing advertises its GPU.
	LabelGPUPresent = "nvidia.com/gpu.present"
	// LabelPluginConfig selects a node's key of a multi-key config
	// ConfigMap (the plugin's config-manager).
	LabelPluginConfig = "nvidia.com/device-plugin.config"
	// configManager is the sidecar that reloads the config when the
	// ConfigMap or the node's label changes.
	configManager = "config-manager"
)

// DevicePluginSelectors are the label selectors of the plugin's pods: its
// Helm chart's, and the static manifest's.
var DevicePluginSelectors = []map[string]string{
	{"app.kubernetes.io/name": "nvidia-device-plugin"},
	{"name": "nvidia-device-plugin-ds"},
}

// DevicePluginEvidence is the NVIDIA device plugin as gathered.
type DevicePluginEvidence struct {
	// Pods are the plugin's pods on every node.
	Pods []corev1.Pod
	// ConfigMaps are those its pods mount, by namespace/name; one that
	// does not exist is absent.
	ConfigMaps map[string]*corev1.ConfigMap
	// Expected is the ConfigMap gpuslice's config commands read
	// (namespace/name).
	Expected string
}

// IsDevicePluginPod says whether p is one of the plugin's pods.
func IsDevicePluginPod(p *corev1.Pod) bool {
	for _, sel := range DevicePluginSelectors {
		match := true
		for k, v := range sel {
			match = match && p.Labels[k] == v
		}
		if match {
			return true
		}
	}
	return false
}

// JudgeDevicePlugin checks, on each GPU node: the plugin's pod runs,
// its ConfigMap is the expected one and not changed since it started,
// and the node advertises what that config implies.
func JudgeDevicePlugin(dp *DevicePluginEvidence, nodes []corev1.Node, r *ledger.Report) []Result {
	var out []Result
	for i := range nodes {
		n := &nodes[i]
		report := nodeReport(r, n.Name)
		if report == nil && n.Labels[LabelGPUPresent] != "true" {
			continue
		}
		i := slices.IndexFunc(dp.Pods, func(p corev1.Pod) bool { return p.Spec.NodeName == n.Name })
		if i < 0 {
			out = append(out, judgeNoPluginPod(n))
			continue
		}
		pod := &dp.Pods[i]
		out = append(out, judgePluginPod(pod, n.Name))
		cm, res := judgePluginConfig(dp, pod, n.Name)
		out = append(out, res)
		out = append(out, judgeAdvertised(cm, n, report))
	}
	return out
}

// judgeNoPluginPod: no pod with the plugin's labels on node n. If the node
// advertises NVIDIA resources a plugin runs all the same (under other
// labels, from the GPU Operator, or outside Kubernetes): a warning that its
// config cannot be checked. If it advertises none, nothing gives pods the
// GPU: a failure.
func judgeNoPluginPod(n *corev1.Node) Result {
	var advertised []string
	for name, q := range n.Status.Allocatable {
		if strings.HasPrefix(string(name), "nvidia.com/") && !q.IsZero() {
			advertised = append(advertised, fmt.Sprintf("%s: %s", name, q.String()))
		}
	}
	slices.Sort(advertised)
	res := Result{Check: CheckDevicePluginPod, Object: "node/" + n.Name}
	lookFor := "kubectl get ds -A -l app.kubernetes.io/name=nvidia-device-plugin; kubectl describe node " + n.Name
	if len(advertised) > 0 {
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("no NVIDIA device plugin pod on %s (labels %s), yet it advertises %s: a plugin runs under other labels or outside the cluster's pods, so its config and health are not checked",
			n.Name, selectorsText(), strings.Join(advertised, ", "))
		res.Remedy = "if the plugin is a DaemonSet, label its pods app.kubernetes.io/name=nvidia-device-plugin; find it with: " + lookFor
		return res
	}
	res.Verdict = Fail
	res.Evidence = "no NVIDIA device plugin pod on " + n.Name + " (labels " + selectorsText() + ") and no nvidia.com/ resource advertised: nothing gives pods its GPU"
	res.Remedy = "check the plugin's DaemonSet reaches the node (nodeSelector, tolerations): " + lookFor
	return res
}

func selectorsText() string {
	var parts []string
	for _, sel := range DevicePluginSelectors {
		for k, v := range sel {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " or ")
}

func judgePluginPod(p *corev1.Pod, node string) Result {
	res := Result{Check: CheckDevicePluginPod, Object: "pod/" + p.Name, Verdict: OK}
	if p.Status.Phase == corev1.PodRunning && podstatus.Ready(p) {
		res.Evidence = fmt.Sprintf("%s/%s Running and Ready on %s", p.Namespace, p.Name, node)
		return res
	}
	why := string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			why += ", " + cs.Name + " " + w.Reason
		}
	}
	res.Verdict = Fail
	res.Evidence = fmt.Sprintf("%s/%s on %s is not Running and Ready (%s): the node's GPU resources go stale", p.Namespace, p.Name, node, why)
	res.Remedy = fmt.Sprintf("kubectl -n %s logs %s; kubectl -n %s describe pod %s (a driver or NVML error shows there)", p.Namespace, p.Name, p.Namespace, p.Name)
	return res
}

// pluginConfigMap is the ConfigMap the pod mounts: "" when none.
func pluginConfigMap(p *corev1.Pod) string {
	for _, v := range p.Spec.Volumes {
		if v.ConfigMap != nil {
			return p.Namespace + "/" + v.ConfigMap.Name
		}
	}
	return ""
}

// judgePluginConfig finds the ConfigMap the plugin was started with and
// says whether it is the expected one and unchanged since; cm is nil
// when there is none to read.
func judgePluginConfig(dp *DevicePluginEvidence, p *corev1.Pod, node string) (*corev1.ConfigMap, Result) {
	res := Result{Check: CheckDevicePluginConfig, Object: "pod/" + p.Name, Verdict: OK}
	name := pluginConfigMap(p)
	if name == "" {
		res.Evidence = "the plugin mounts no ConfigMap: its defaults, no time-slicing (each GPU advertised once as nvidia.com/gpu)"
		return nil, res
	}
	cm := dp.ConfigMaps[name]
	if cm == nil {
		res.Verdict, res.Evidence = Fail, fmt.Sprintf("the plugin on %s mounts ConfigMap %s, which does not exist", node, name)
		res.Remedy = fmt.Sprintf("create it (gpuslice config render --replicas 8 --rename | kubectl apply -f -), or point the DaemonSet at the right one; then restart the plugin: kubectl -n %s delete pod %s", p.Namespace, p.Name)
		return nil, res
	}
	var facts, remedies []string
	facts = append(facts, "the plugin reads ConfigMap "+name)
	if dp.Expected != "" && name != dp.Expected {
		res.Verdict = Warn
		facts = append(facts, "not "+dp.Expected+", which gpuslice config validate --from-cluster reads")
		ns, n, _ := strings.Cut(name, "/")
		remedies = append(remedies, fmt.Sprintf("validate the one it reads: gpuslice config validate --from-cluster --configmap-namespace %s --configmap-name %s", ns, n))
	}
	reloads := slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == configManager })
	if changed := lastChange(cm); !reloads && p.Status.StartTime != nil && changed.After(p.Status.StartTime.Time) {
		res.Verdict = Fail
		facts = append(facts, fmt.Sprintf("changed at %s, after the plugin started at %s: it still runs the old config", changed.UTC().Format(time.RFC3339), p.Status.StartTime.UTC().Format(time.RFC3339)))
		remedies = append(remedies, fmt.Sprintf("restart the plugin so it reads the new config: kubectl -n %s delete pod %s (its DaemonSet recreates it)", p.Namespace, p.Name))
	}
	res.Evidence, res.Remedy = strings.Join(facts, ", "), strings.Join(remedies, "; ")
	return cm, res
}

// lastChange is the newest write to cm its managed fields record (the
// creation time without them).
func lastChange(cm *corev1.ConfigMap) time.Time {
	t := cm.CreationTimestamp.Time
	for _, f := range cm.ManagedFields {
		if f.Time != nil && f.Time.After(t) {
			t = f.Time.Time
		}
	}
	return t
}

// judgeAdvertised compares what the node advertises with what cm (nil:
// the plugin's defaults) implies: replicas x GPUs of each shared
// resource, and nothing left of a renamed one.
func judgeAdvertised(cm *corev1.ConfigMap, n *corev1.Node, report *ledger.NodeReport) Result {
	res := Result{Check: CheckDevicePluginResources, Object: "node/" + n.Name, Verdict: OK}
	gpus := 0
	if report != nil {
		gpus = report.GPUCount
	}
	advertised := func(name string) int64 {
		q, ok := n.Status.Allocatable[corev1.ResourceName(name)]
		if !ok {
			return 0
		}
		return q.Value()
	}
	var shared []pluginconfig.SharedResource
	if cm != nil {
		cfg, err := pluginconfig.FromConfigMap(cm, configKey(cm, n))
		if err != nil {
			res.Verdict, res.Evidence = Fail, err.Error()
			res.Remedy = "fix it (gpuslice config validate --from-cluster shows each problem), then restart the plugin"
			return res
		}
		shared = cfg.SharedResources()
	}
	if len(shared) == 0 {
		// No sharing: each GPU is advertised once.
		shared = []pluginconfig.SharedResource{{Name: "nvidia.com/gpu", Original: "nvidia.com/gpu", Replicas: 1}}
	}
	var facts, wrong []string
	for _, s := range shared {
		got := advertised(s.Name)
		if gpus == 0 {
			facts = append(facts, fmt.Sprintf("%s: %d (GPU count unknown: no %s label)", s.Name, got, ledger.LabelGPUCount))
			if got == 0 {
				wrong = append(wrong, s.Name+" not advertised")
			}
		} else if want := int64(s.Replicas * gpus); got != want {
			wrong = append(wrong, fmt.Sprintf("%s: %d, the config implies %d (%d replicas x %d GPU(s))", s.Name, got, want, s.Replicas, gpus))
		} else {
			facts = append(facts, fmt.Sprintf("%s: %d = %d replicas x %d GPU(s)", s.Name, got, s.Replicas, gpus))
		}
		if s.Renamed {
			if left := advertised(s.Original); left > 0 {
				wrong = append(wrong, fmt.Sprintf("%s: %d though the config renames it to %s (want 0)", s.Original, left, s.Name))
			} else {
				facts = append(facts, s.Original+": 0 (renamed)")
			}
		}
	}
	if len(wrong) > 0 {
		res.Verdict = Fail
		res.Evidence = "advertises " + strings.Join(append(wrong, facts...), "; ")
		res.Remedy = "the plugin has not applied its config: restart it (kubectl -n NAMESPACE delete pod -l app.kubernetes.io/name=nvidia-device-plugin --field-selector spec.nodeName=" + n.Name + ") and read its log"
		return res
	}
	res.Evidence = "advertises " + strings.Join(facts, "; ")
	return res
}

// configKey is the key of a multi-key ConfigMap the plugin reads on n:
// the node's label, else "default" when present; "" lets a one-key
// ConfigMap speak for itself.
func configKey(cm *corev1.ConfigMap, n *corev1.Node) string {
	if k := n.Labels[LabelPluginConfig]; k != "" {
		return k
	}
	if len(cm.Data)+len(cm.BinaryData) > 1 {
		return pluginconfig.DefaultConfigMapKey
	}
	return ""
}
