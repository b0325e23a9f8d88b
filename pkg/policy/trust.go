package policy

import (
	"fmt"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Trust is what only a cluster admin controls, and so what may protect a
// workload or raise its priority across namespaces: the arbiter's own
// configuration. A namespace's users can write any annotation on their
// own workloads; outside a trusted namespace those annotations may only
// lower the workload's standing (preemptible, a lower priority).
type Trust struct {
	// Protected are the workloads the arbiter's configuration protects
	// (--protected, --plex-workload), annotated or not.
	Protected map[workload.Ref]bool
	// Namespaces are those an admin trusts (--trusted-namespace): their
	// workloads' annotations are believed in full.
	Namespaces map[string]bool
}

// NewTrust builds a Trust from the configured workloads and namespaces.
func NewTrust(protected []workload.Ref, namespaces []string) *Trust {
	t := &Trust{Protected: map[workload.Ref]bool{}, Namespaces: map[string]bool{}}
	for _, r := range protected {
		t.Protected[r] = true
	}
	for _, ns := range namespaces {
		t.Namespaces[ns] = true
	}
	return t
}

// Configured says whether the configuration names ref: the arbiter looks
// at it even without annotations.
func (t *Trust) Configured(ref workload.Ref) bool { return t != nil && t.Protected[ref] }

// Apply is p as far as it may be believed for ref, with a note for each
// annotation it ignored (for a Warning event). A nil Trust believes every
// annotation, as a single-user homelab may. priorityClassName and classes
// give the priority the scheduler would give the pods, the most an
// annotation outside a trusted namespace may claim.
func (t *Trust) Apply(ref workload.Ref, p Policy, priorityClassName string, classes PriorityClasses) (Policy, []string) {
	// A workload the configuration protects is vouched for by the admin:
	// its own priority annotation is believed, as in a trusted namespace.
	if t == nil || t.Namespaces[ref.Namespace] || t.Protected[ref] && !p.Preemptible {
		if t.Configured(ref) && !p.Preemptible {
			p.Protected = true
		}
		return p, nil
	}
	var notes []string
	how := fmt.Sprintf("a cluster admin names it in the arbiter's --protected, or trusts namespace %s with --trusted-namespace", ref.Namespace)
	switch {
	case p.Preemptible:
		// Its own annotation lowers its standing: believed.
		p.Protected = false
	case p.Protected:
		p.Protected = false
		notes = append(notes, fmt.Sprintf("%s ignored: a workload's own annotation cannot protect it; %s", workload.AnnotationProtected, how))
	}
	if strings.HasPrefix(p.PriorityFrom, "annotation ") {
		class, from, err := classes.Priority(priorityClassName)
		if err != nil {
			class, from = 0, "no PriorityClass"
		}
		if p.Priority > class {
			notes = append(notes, fmt.Sprintf("%s=%d ignored: above its pods' priority (%d, %s), and only a trusted namespace may raise it; %s",
				workload.AnnotationPriority, p.Priority, class, from, how))
			p.Priority, p.PriorityFrom = class, from+" (annotation above it ignored)"
		}
	}
	return p, notes
}
