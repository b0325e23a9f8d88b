// Package ops runs the seed's GPU runbooks against a cluster: tune a
// workload's GPU memory fraction or share count, release a workload's GPU
// (scale to zero, remembering the replicas) and restore it.
//
// Each operation is a pure decision on the objects as read (plan*
// functions, table-tested) and a thin I/O layer that reads them, applies
// the decision in one patch per object guarded by the resourceVersion it
// read, and retries on conflict. Operations work on Deployments and
// StatefulSets.
package ops

import (
	"fmt"
	"strings"
)

// Workload kinds ops acts on.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Ref names a Deployment or StatefulSet.
type Ref struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ParseRef reads the kubectl spellings "deploy/NAME", "deployment/NAME",
// "deployments.apps/NAME", "sts/NAME", "statefulset/NAME", or a bare NAME,
// which means a Deployment as in the seed's runbooks.
func ParseRef(s, namespace string) (Ref, error) {
	kind, name, found := strings.Cut(s, "/")
	if !found {
		kind, name = "deployment", s
	}
	r := Ref{Namespace: namespace, Name: name}
	switch strings.TrimSuffix(strings.ToLower(kind), ".apps") {
	case "deploy", "deployment", "deployments":
		r.Kind = KindDeployment
	case "sts", "statefulset", "statefulsets":
		r.Kind = KindStatefulSet
	default:
		return Ref{}, fmt.Errorf("%q: gpuslice acts on Deployments and StatefulSets; write deploy/NAME, sts/NAME or a bare Deployment NAME", s)
	}
	if name == "" || strings.Contains(name, "/") {
		return Ref{}, fmt.Errorf("%q: want KIND/NAME or NAME, e.g. deploy/vllm-server", s)
	}
	if namespace == "" {
		return Ref{}, fmt.Errorf("%q: no namespace: pass -n NAMESPACE", s)
	}
	return r, nil
}

// String is the kubectl spelling: "deployment/vllm-server".
func (r Ref) String() string { return strings.ToLower(r.Kind) + "/" + r.Name }

// Qualified adds the namespace: "deployment ai-dev/vllm-server".
func (r Ref) Qualified() string {
	return strings.ToLower(r.Kind) + " " + r.Namespace + "/" + r.Name
}

// kubectlArgs is how the fixes in messages name the workload.
func (r Ref) kubectlArgs() string { return r.String() + " -n " + r.Namespace }
