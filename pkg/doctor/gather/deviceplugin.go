package gather

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
)

// collectDevicePlugin picks the plugin's pods out of pods (every pod of
// the cluster, listed for the ledger) and reads the ConfigMaps they
// mount. A ConfigMap it may not read is left out, as one that is missing.
func collectDevicePlugin(ctx context.Context, cs kubernetes.Interface, pods []corev1.Pod) (*doctor.DevicePluginEvidence, error) {
	dp := &doctor.DevicePluginEvidence{ConfigMaps: map[string]*corev1.ConfigMap{},
		Expected: pluginconfig.DefaultNamespace + "/" + pluginconfig.DefaultConfigMapName}
	for i := range pods {
		p := &pods[i]
		if !doctor.IsDevicePluginPod(p) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		dp.Pods = append(dp.Pods, *p)
		for _, v := range p.Spec.Volumes {
			if v.ConfigMap == nil {
				continue
			}
			key := p.Namespace + "/" + v.ConfigMap.Name
			if _, seen := dp.ConfigMaps[key]; seen {
				continue
			}
			cm, err := cs.CoreV1().ConfigMaps(p.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
				continue
			case err != nil:
				return nil, err
			}
			dp.ConfigMaps[key] = cm
		}
	}
	return dp, nil
}

// DevicePluginDrift is where the running device plugin does not run its
// ConfigMap (config validate --from-cluster): a ConfigMap changed since
// the plugin started, or missing, and nodes advertising other resources
// than it implies. A plugin pod down is doctor's to report, not drift.
func DevicePluginDrift(ctx context.Context, cs kubernetes.Interface) ([]doctor.Result, error) {
	in, report, err := takeLedger(ctx, cs)
	if err != nil {
		return nil, err
	}
	dp, err := collectDevicePlugin(ctx, cs, in.Pods)
	if err != nil {
		return nil, err
	}
	var drift []doctor.Result
	for _, res := range doctor.JudgeDevicePlugin(dp, in.Nodes, report) {
		if res.Verdict != doctor.OK && res.Check != doctor.CheckDevicePluginPod {
			drift = append(drift, res)
		}
	}
	return drift, nil
}
