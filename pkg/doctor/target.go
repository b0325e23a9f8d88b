package doctor

import (
	"fmt"
	"strings"

	"github.com/gpuslice/gpuslice/internal/suggest"
)

// Target is the workload a doctor run is about.
type Target struct {
	Kind string // KindDeployment, KindStatefulSet, KindDaemonSet, KindCronJob or KindPod
	Name string
}

// String writes it back the way kubectl names objects: deployment/vllm-server.
func (t Target) String() string { return strings.ToLower(t.Kind) + "/" + t.Name }

// targetKinds maps what kubectl accepts (singular, plural, short name, and
// the group-qualified form kubectl get -o name prints) to a kind.
var targetKinds = map[string]string{
	"deployment": KindDeployment, "deployments": KindDeployment, "deploy": KindDeployment, "deployment.apps": KindDeployment,
	"statefulset": KindStatefulSet, "statefulsets": KindStatefulSet, "sts": KindStatefulSet, "statefulset.apps": KindStatefulSet,
	"daemonset": KindDaemonSet, "daemonsets": KindDaemonSet, "ds": KindDaemonSet, "daemonset.apps": KindDaemonSet,
	"cronjob": KindCronJob, "cronjobs": KindCronJob, "cj": KindCronJob, "cronjob.batch": KindCronJob,
	"pod": KindPod, "pods": KindPod, "po": KindPod,
}

// ParseTarget reads KIND/NAME: deployment/vllm-server, deploy/vllm-server,
// sts/NAME, ds/NAME, cj/NAME, po/NAME.
func ParseTarget(s string) (Target, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
		return Target{}, fmt.Errorf("%q: give KIND/NAME, e.g. deployment/vllm-server (kinds: deployment, statefulset, daemonset, cronjob, pod)", s)
	}
	k, known := targetKinds[strings.ToLower(kind)]
	if !known {
		hint := ""
		if best, _ := suggest.Closest(strings.ToLower(kind), []string{"deployment", "statefulset", "daemonset", "cronjob", "pod"}); best != "" {
			hint = fmt.Sprintf("; did you mean %s/%s?", best, name)
		}
		return Target{}, fmt.Errorf("%q: doctor checks deployment, statefulset, daemonset, cronjob or pod (or deploy, sts, ds, cj, po), not %q%s", s, kind, hint)
	}
	return Target{Kind: k, Name: name}, nil
}
