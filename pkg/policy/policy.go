// Package policy reads what the arbiter may do to a workload from the
// workload's own annotations: whether it is protected or preemptible, its
// priority, the hours it may use the GPU, what preempting it means and how
// long to wait before giving the GPU back.
//
// Policy lives in annotations on the Deployment or StatefulSet, not in a
// custom resource: it travels with the workload's own manifest (Helm
// chart, kustomization), kubectl describe shows it, and nothing has to be
// installed before the first workload is annotated. The release record the
// arbiter writes (pkg/ops) sits beside it, on the same object.
//
// Parsing is pure; the caller passes the PriorityClasses it listed.
package policy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	schedulingv1 "k8s.io/api/scheduling/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Action is what preempting a workload does.
type Action string

// Actions.
const (
	ActionScaleToZero Action = "scale-to-zero"
	ActionLowerMemory Action = "lower-memory"
)

// Policy is one workload's arbitration policy.
type Policy struct {
	Protected   bool `json:"protected,omitempty"`
	Preemptible bool `json:"preemptible,omitempty"`
	// Priority orders workloads: lower is preempted first, and a
	// protected workload's trigger only preempts lower ones.
	Priority int32 `json:"priority"`
	// PriorityFrom says where Priority came from, for messages.
	PriorityFrom string `json:"priorityFrom"`
	// Hours is nil when the workload may use the GPU at any time.
	Hours  *Hours `json:"activeHours,omitempty"`
	Action Action `json:"action,omitempty"`
	// Fraction is the GPU_MEMORY_UTILIZATION ActionLowerMemory sets.
	Fraction string `json:"fraction,omitempty"`
	// HoldDown is 0 when the arbiter's default applies.
	HoldDown time.Duration `json:"holdDown,omitempty"`
}

// Managed says whether the arbiter looks at the workload at all.
func (p Policy) Managed() bool { return p.Protected || p.Preemptible }

// PriorityClasses are the cluster's classes by name.
type PriorityClasses map[string]*schedulingv1.PriorityClass

// Priority is the value the scheduler would give a pod of the class name:
// the class's value, the global default class's when name is empty, or 0.
func (pcs PriorityClasses) Priority(name string) (int32, string, error) {
	if name == "" {
		// The lowest-named global default wins, as the API server picks.
		names := make([]string, 0, len(pcs))
		for n, pc := range pcs {
			if pc.GlobalDefault {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			return 0, "no PriorityClass", nil
		}
		return pcs[names[0]].Value, "PriorityClass " + names[0] + " (global default)", nil
	}
	pc, ok := pcs[name]
	if !ok {
		return 0, "", fmt.Errorf("its pods name PriorityClass %q, which does not exist: create it, or set %s", name, workload.AnnotationPriority)
	}
	return pc.Value, "PriorityClass " + name, nil
}

// Parse reads a workload's policy from its annotations. priorityClassName
// is its pod template's. defaultZone applies to active hours without
// AnnotationTimeZone. Every problem is reported at once, naming the
// annotation and what it accepts.
func Parse(annotations map[string]string, priorityClassName string, classes PriorityClasses, defaultZone *time.Location) (Policy, error) {
	var p Policy
	var errs []error
	flag := func(key string) bool {
		v, ok := annotations[key]
		if !ok {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, v))
		}
		return b
	}
	p.Protected = flag(workload.AnnotationProtected)
	p.Preemptible = flag(workload.AnnotationPreemptible)
	if p.Protected && p.Preemptible {
		errs = append(errs, fmt.Errorf("%s and %s are both true: a workload is one or the other", workload.AnnotationProtected, workload.AnnotationPreemptible))
	}

	if v, ok := annotations[workload.AnnotationPriority]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer, higher wins (PriorityClass values work the same)", workload.AnnotationPriority, v))
		}
		p.Priority, p.PriorityFrom = int32(n), "annotation "+workload.AnnotationPriority
	} else {
		var err error
		if p.Priority, p.PriorityFrom, err = classes.Priority(priorityClassName); err != nil {
			errs = append(errs, err)
		}
	}

	if v, ok := annotations[workload.AnnotationActiveHours]; ok {
		zone := defaultZone
		if z, ok := annotations[workload.AnnotationTimeZone]; ok {
			loc, err := time.LoadLocation(z)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not an IANA time zone, e.g. Europe/Berlin or America/New_York", workload.AnnotationTimeZone, z))
			} else {
				zone = loc
			}
		}
		h, err := ParseHours(v, zone)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", workload.AnnotationActiveHours, v, err))
		}
		p.Hours = h
	}

	p.Action = ActionScaleToZero
	if v, ok := annotations[workload.AnnotationPreemptAction]; ok {
		if err := p.parseAction(v); err != nil {
			errs = append(errs, err)
		}
	}

	if v, ok := annotations[workload.AnnotationHoldDown]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 10m or 90s", workload.AnnotationHoldDown, v))
		}
		p.HoldDown = d
	}
	if err := errors.Join(errs...); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func (p *Policy) parseAction(v string) error {
	name, arg, hasArg := strings.Cut(strings.TrimSpace(v), "=")
	switch Action(name) {
	case ActionScaleToZero:
		if !hasArg {
			return nil
		}
	case ActionLowerMemory:
		if _, err := workload.ParseFraction(arg); err == nil {
			p.Action, p.Fraction = ActionLowerMemory, arg
			return nil
		}
	}
	return fmt.Errorf("%s=%q: want %s, or %s=FRACTION such as %s=0.30", workload.AnnotationPreemptAction, v, ActionScaleToZero, ActionLowerMemory, ActionLowerMemory)
}
