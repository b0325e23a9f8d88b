package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// defaultPlexWorkload is the seed's Plex Deployment: protected by default
// in the arbiter (--plex-workload) and the admission gate (--protected).
const defaultPlexWorkload = "media/plex"

// trustFlags are what only a cluster admin controls (policy.Trust): the
// protected workloads and the namespaces whose annotations are believed
// in full. The arbiter and the webhook's admission gate read the same
// flags, so one install protects the same workloads in both.
type trustFlags struct {
	protected  []string
	namespaces []string
}

// addFlags adds --protected (defaulting to defaults; also is what else
// protects a workload, for the help text) and --trusted-namespace.
func (t *trustFlags) addFlags(f *pflag.FlagSet, defaults []string, also string) {
	f.StringArrayVar(&t.protected, "protected", defaults, "a protected workload, NAMESPACE/NAME or NAMESPACE/KIND/NAME; repeat for each"+also+
		". A workload's own gpuslice.io/protected counts only in a --trusted-namespace")
	f.StringArrayVar(&t.namespaces, "trusted-namespace", nil, "a namespace whose workloads' annotations may protect them and raise their priority above their PriorityClass; repeat for each")
}

// refs parses --protected and extra (further protected workloads, such as
// --plex-workload).
func (t *trustFlags) refs(extra ...string) ([]workload.Ref, error) {
	var out []workload.Ref
	for _, spec := range append(append([]string{}, t.protected...), extra...) {
		ref, err := parseWorkloadRef(spec)
		if err != nil {
			return nil, fmt.Errorf("--protected: %w", err)
		}
		out = append(out, ref)
	}
	return out, nil
}

// trust is the policy.Trust the flags describe.
func (t *trustFlags) trust(extra ...string) (*policy.Trust, error) {
	refs, err := t.refs(extra...)
	if err != nil {
		return nil, err
	}
	return policy.NewTrust(refs, t.namespaces), nil
}
