package workload

import (
	"fmt"
	"strings"
)

// Kinds of workload gpuslice acts on.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	// KindCronJob is released by suspending it and its running Jobs,
	// and restored by resuming them (never scaled).
	KindCronJob = "CronJob"
	// KindJob is what a CronJob runs; gpuslice suspends and resumes
	// them with their CronJob.
	KindJob = "Job"
)

// Ref names a workload: a Deployment, StatefulSet or CronJob (and, where a
// pod has no such owner, its own kind: DaemonSet, Job, Pod).
type Ref struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ParseRef reads the kubectl spellings "deploy/NAME", "deployment/NAME",
// "deployments.apps/NAME", "sts/NAME", "statefulset/NAME", "cj/NAME",
// "cronjob/NAME", "cronjobs.batch/NAME", or a bare NAME, which means a
// Deployment as in the seed's runbooks.
func ParseRef(s, namespace string) (Ref, error) {
	kind, name, found := strings.Cut(s, "/")
	if !found {
		kind, name = "deployment", s
	}
	r := Ref{Namespace: namespace, Name: name}
	switch strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(kind), ".apps"), ".batch") {
	case "deploy", "deployment", "deployments":
		r.Kind = KindDeployment
	case "sts", "statefulset", "statefulsets":
		r.Kind = KindStatefulSet
	case "cj", "cronjob", "cronjobs":
		r.Kind = KindCronJob
	default:
		return Ref{}, fmt.Errorf("%q: gpuslice acts on Deployments, StatefulSets and CronJobs; write deploy/NAME, sts/NAME, cj/NAME or a bare Deployment NAME", s)
	}
	if name == "" || strings.Contains(name, "/") {
		return Ref{}, fmt.Errorf("%q: want KIND/NAME or NAME, e.g. deploy/vllm-server", s)
	}
	if namespace == "" {
		return Ref{}, fmt.Errorf("%q: no namespace: pass -n NAMESPACE", s)
	}
	return r, nil
}

// ParseQualifiedRef reads "NAMESPACE/NAME" (a Deployment) or
// "NAMESPACE/KIND/NAME", as a flag names a workload in any namespace.
func ParseQualifiedRef(s string) (Ref, error) {
	ns, rest, ok := strings.Cut(s, "/")
	if !ok || ns == "" {
		return Ref{}, fmt.Errorf("%q: want NAMESPACE/NAME or NAMESPACE/KIND/NAME, e.g. media/plex", s)
	}
	return ParseRef(rest, ns)
}

// String is the kubectl spelling: "deployment/vllm-server".
func (r Ref) String() string { return strings.ToLower(r.Kind) + "/" + r.Name }

// Qualified adds the namespace: "deployment ai-dev/vllm-server".
func (r Ref) Qualified() string {
	return strings.ToLower(r.Kind) + " " + r.Namespace + "/" + r.Name
}

// KubectlArgs is how fixes in messages name the workload on a kubectl
// command line: "deployment/vllm-server -n ai-dev".
func (r Ref) KubectlArgs() string { return r.String() + " -n " + r.Namespace }
