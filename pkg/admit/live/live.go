// Package live is `gpuslice admit` against the live cluster: it lists the
// cluster once, judges the manifest (package admit) and records a
// break-glass admission as an Event on each workload it let through.
package live

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/admit"
	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Component is the Events' source.
const Component = "gpuslice-admit"

// ErrUnreadable wraps a failure to read the cluster: exit code 31.
var ErrUnreadable = errors.New("the cluster could not be read")

// Admit judges targets against the cluster as it is now and, with
// break-glass, records an Event on each workload it let through and adds
// them to the admission gate's journal at gateJournal.
func Admit(ctx context.Context, cs kubernetes.Interface, targets []admit.Target, skipped []admit.Skipped, opt admit.Options, gateJournal store.Ref) (*admit.Report, error) {
	c, err := snapshot.Cluster(ctx, cs, opt.Ledger)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	r, err := admit.Judge(c, targets, skipped, opt)
	if err != nil {
		return nil, err
	}
	var entries []journal.Entry
	for _, v := range r.Workloads {
		if v.Overridden {
			msg, err := recordBreakGlass(ctx, cs, c, v, opt.BreakGlass)
			if err != nil {
				return nil, err
			}
			entries = append(entries, journal.Entry{At: time.Now().UTC(), Action: journal.ActionBreakGlass, Workload: v.Workload, Reason: opt.BreakGlass, Message: msg, By: journal.ByAdmit})
		}
	}
	if len(entries) > 0 {
		journalBreakGlass(ctx, cs, gateJournal, entries, r)
	}
	return r, nil
}

// journalBreakGlass adds the overrides to the gate's journal. It runs as
// the user, who may not write there: the Event is the record then, and a
// warning says what to grant, without failing the command.
func journalBreakGlass(ctx context.Context, cs kubernetes.Interface, ref store.Ref, entries []journal.Entry, r *admit.Report) {
	err := store.Append(ctx, cs, ref, entries, Component)
	switch {
	case err == nil:
		r.Journaled = true
	case apierrors.IsForbidden(err):
		r.Warnings = append(r.Warnings, fmt.Sprintf("break-glass recorded as an Event, but not in the admission gate's journal, %s: you may not write it (%v); for gpuslice history to show it, a cluster admin grants you get and update on that ConfigMap (and create on configmaps in %s while it does not exist)", ref, err, ref.Namespace))
	default:
		r.Warnings = append(r.Warnings, fmt.Sprintf("break-glass recorded as an Event, but not in the admission gate's journal, %s: %v; pass --gate-journal-namespace with the webhook's namespace", ref, err))
	}
}

// recordBreakGlass writes the Event on the workload (which may not exist
// yet: the Event then names it without a UID) and returns what it
// overrode.
func recordBreakGlass(ctx context.Context, cs kubernetes.Interface, c *clusterview.Cluster, v admit.Verdict, reason string) (overrode string, err error) {
	ref := v.Workload
	obj := corev1.ObjectReference{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, APIVersion: apiVersion(ref.Kind)}
	if o, ok := c.Object(ref).(metav1.Object); ok {
		obj.UID = o.GetUID()
	}
	msgs := make([]string, len(v.Problems))
	for i, p := range v.Problems {
		msgs[i] = p.Message
	}
	overrode = strings.Join(msgs, "; ")
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: ref.Name + ".", Namespace: ref.Namespace},
		InvolvedObject: obj,
		Reason:         workload.ReasonBreakGlass,
		Type:           corev1.EventTypeWarning,
		Message: fmt.Sprintf("gpuslice admit --break-glass %q let %s through despite: %s",
			reason, ref.Qualified(), overrode),
		Source:         corev1.EventSource{Component: Component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := cs.CoreV1().Events(ref.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("recording the break-glass Event: namespace %s does not exist yet: create it first: %w", ref.Namespace, err)
		}
		return "", fmt.Errorf("recording the break-glass Event in %s (grant create on events there): %w", ref.Namespace, err)
	}
	return overrode, nil
}

// apiVersion is the group version of the kinds admit reads.
func apiVersion(kind string) string {
	switch kind {
	case workload.KindDeployment, workload.KindStatefulSet:
		return "apps/v1"
	case workload.KindJob, workload.KindCronJob:
		return "batch/v1"
	}
	return "v1"
}
