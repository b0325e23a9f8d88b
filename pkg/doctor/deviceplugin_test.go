package doctor

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
)

// seedPluginConfig is the seed's: 8 replicas, renamed to nvidia.com/gpu.shared.
const seedPluginConfig = "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - {name: nvidia.com/gpu, replicas: 8}\n"

func TestDoctorJudgeDevicePlugin(t *testing.T) {
	started := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	cm := func(data string, changed time.Time) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: pluginconfig.DefaultNamespace, Name: pluginconfig.DefaultConfigMapName,
			CreationTimestamp: metav1.NewTime(started.Add(-time.Hour)),
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl", Time: &metav1.Time{Time: changed}}}},
			Data: map[string]string{pluginconfig.DefaultConfigMapKey: data}}
	}
	pluginPod := func(phase corev1.PodPhase, ready bool, configMap string) corev1.Pod {
		p := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "nvidia-device-plugin-x7k2p", Labels: map[string]string{"app.kubernetes.io/name": "nvidia-device-plugin"}},
			Spec:       corev1.PodSpec{NodeName: "homelabai", Containers: []corev1.Container{{Name: "nvidia-device-plugin-ctr"}}},
			Status:     corev1.PodStatus{Phase: phase, StartTime: &metav1.Time{Time: started}},
		}
		if configMap != "" {
			p.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}}}
		}
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		return p
	}
	advertising := func(res map[string]int64) corev1.Node {
		n := homelabai()
		n.Status.Allocatable, n.Status.Capacity = corev1.ResourceList{}, corev1.ResourceList{}
		for k, v := range res {
			n.Status.Allocatable[corev1.ResourceName(k)] = *resource.NewQuantity(v, resource.DecimalSI)
			n.Status.Capacity[corev1.ResourceName(k)] = *resource.NewQuantity(v, resource.DecimalSI)
		}
		return n
	}
	seedNode := advertising(map[string]int64{"nvidia.com/gpu": 0, shared: 8})
	expected := pluginconfig.DefaultNamespace + "/" + pluginconfig.DefaultConfigMapName
	type want struct {
		check    string
		verdict  Verdict
		contains []string
	}
	tests := []struct {
		name string
		dp   DevicePluginEvidence
		node corev1.Node
		want []want
	}{{
		name: "the seed's plugin: running, its ConfigMap, 8 shares and no nvidia.com/gpu",
		dp:   DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, pluginconfig.DefaultConfigMapName)}, ConfigMaps: map[string]*corev1.ConfigMap{expected: cm(seedPluginConfig, started.Add(-time.Minute))}, Expected: expected},
		node: seedNode,
		want: []want{
			{CheckDevicePluginPod, OK, []string{"kube-system/nvidia-device-plugin-x7k2p Running and Ready on homelabai"}},
			{CheckDevicePluginConfig, OK, []string{"the plugin reads ConfigMap kube-system/nvidia-device-plugin-config"}},
			{CheckDevicePluginResources, OK, []string{"nvidia.com/gpu.shared: 8 = 8 replicas x 1 GPU(s)", "nvidia.com/gpu: 0 (renamed)"}},
		},
	}, {
		name: "no plugin pod on the GPU node, nothing advertised",
		dp:   DevicePluginEvidence{Expected: expected},
		node: func() corev1.Node {
			n := advertising(map[string]int64{"nvidia.com/gpu": 0})
			n.Labels[LabelGPUPresent] = "true"
			return n
		}(),
		want: []want{{CheckDevicePluginPod, Fail, []string{"no NVIDIA device plugin pod on homelabai", "no nvidia.com/ resource advertised", "kubectl describe node homelabai"}}},
	}, {
		name: "no plugin pod found, but the node advertises shares: a plugin under other labels",
		dp:   DevicePluginEvidence{Expected: expected},
		node: seedNode,
		want: []want{{CheckDevicePluginPod, Warn, []string{"no NVIDIA device plugin pod on homelabai", "yet it advertises nvidia.com/gpu.shared: 8", "not checked"}}},
	}, {
		name: "plugin crashing",
		dp: DevicePluginEvidence{Pods: []corev1.Pod{func() corev1.Pod {
			p := pluginPod(corev1.PodRunning, false, pluginconfig.DefaultConfigMapName)
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nvidia-device-plugin-ctr", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
			return p
		}()}, ConfigMaps: map[string]*corev1.ConfigMap{expected: cm(seedPluginConfig, started.Add(-time.Minute))}, Expected: expected},
		node: seedNode,
		want: []want{{CheckDevicePluginPod, Fail, []string{"not Running and Ready (Running, nvidia-device-plugin-ctr CrashLoopBackOff)", "kubectl -n kube-system logs nvidia-device-plugin-x7k2p"}}},
	}, {
		name: "ConfigMap changed to 4 replicas after the plugin started: stale, and the node still says 8",
		dp: DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, pluginconfig.DefaultConfigMapName)},
			ConfigMaps: map[string]*corev1.ConfigMap{expected: cm(seedPluginConfig[:len(seedPluginConfig)-len("8}\n")]+"4}\n", started.Add(time.Hour))}, Expected: expected},
		node: seedNode,
		want: []want{
			{CheckDevicePluginConfig, Fail, []string{"changed at 2026-12-04T21:00:00Z, after the plugin started at 2026-12-04T20:00:00Z", "kubectl -n kube-system delete pod nvidia-device-plugin-x7k2p"}},
			{CheckDevicePluginResources, Fail, []string{"nvidia.com/gpu.shared: 8, the config implies 4 (4 replicas x 1 GPU(s))"}},
		},
	}, {
		name: "renamed, but the node still advertises nvidia.com/gpu (gpu: 0 expected)",
		dp:   DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, pluginconfig.DefaultConfigMapName)}, ConfigMaps: map[string]*corev1.ConfigMap{expected: cm(seedPluginConfig, started.Add(-time.Minute))}, Expected: expected},
		node: advertising(map[string]int64{"nvidia.com/gpu": 1, shared: 8}),
		want: []want{{CheckDevicePluginResources, Fail, []string{"nvidia.com/gpu: 1 though the config renames it to nvidia.com/gpu.shared (want 0)"}}},
	}, {
		name: "the plugin reads another ConfigMap than gpuslice's",
		dp: DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, "time-slicing-config")},
			ConfigMaps: map[string]*corev1.ConfigMap{"kube-system/time-slicing-config": cm(seedPluginConfig, started.Add(-time.Minute))}, Expected: expected},
		node: seedNode,
		want: []want{{CheckDevicePluginConfig, Warn, []string{"reads ConfigMap kube-system/time-slicing-config, not kube-system/nvidia-device-plugin-config", "--configmap-name time-slicing-config"}}},
	}, {
		name: "the ConfigMap it mounts is gone",
		dp:   DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, pluginconfig.DefaultConfigMapName)}, ConfigMaps: map[string]*corev1.ConfigMap{}, Expected: expected},
		node: seedNode,
		want: []want{{CheckDevicePluginConfig, Fail, []string{"mounts ConfigMap kube-system/nvidia-device-plugin-config, which does not exist"}}},
	}, {
		name: "no config: each GPU once as nvidia.com/gpu",
		dp:   DevicePluginEvidence{Pods: []corev1.Pod{pluginPod(corev1.PodRunning, true, "")}, Expected: expected},
		node: advertising(map[string]int64{"nvidia.com/gpu": 1}),
		want: []want{
			{CheckDevicePluginConfig, OK, []string{"mounts no ConfigMap"}},
			{CheckDevicePluginResources, OK, []string{"nvidia.com/gpu: 1 = 1 replicas x 1 GPU(s)"}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := []corev1.Node{tt.node, plainNode("nas")}
			results := JudgeDevicePlugin(&tt.dp, nodes, ledgerOf(t, nodes))
			for _, w := range tt.want {
				found := false
				for _, res := range results {
					if res.Check == w.check {
						found = true
						expect(t, res, w.verdict, w.contains...)
					}
				}
				if !found {
					t.Errorf("no %s result in %+v", w.check, results)
				}
			}
			for _, res := range results {
				if res.Object == "node/nas" {
					t.Errorf("judged the node without a GPU: %+v", res)
				}
			}
		})
	}
}
