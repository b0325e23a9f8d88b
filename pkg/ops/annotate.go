package ops

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Annotate sets and removes annotations on a workload in one patch. check,
// when not nil, sees the stored annotations first and may refuse (its
// error comes back as is), so a caller can write an intent only if none
// is there yet. It reports whether anything changed.
func Annotate(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, set map[string]string, remove []string, check func(map[string]string) error) (bool, error) {
	var changed bool
	err := modifyWorkload(ctx, cs, ref, false, func(w *appsWorkload) (bool, error) {
		changed = false
		if check != nil {
			if err := check(w.meta.Annotations); err != nil {
				return false, err
			}
		}
		for k, v := range set {
			if cur, ok := w.meta.Annotations[k]; !ok || cur != v {
				w.annotate(k, v)
				changed = true
			}
		}
		for _, k := range remove {
			if _, ok := w.meta.Annotations[k]; ok {
				delete(w.meta.Annotations, k)
				changed = true
			}
		}
		return changed, nil
	})
	return changed, err
}

// RestartAt rolls the workload out as kubectl rollout restart does, with
// the restart time at (so a caller that records at can tell later whether
// the restart was written). A workload already restarted at at is left
// alone.
func RestartAt(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, at time.Time) (bool, error) {
	var changed bool
	err := modifyWorkload(ctx, cs, ref, false, func(w *appsWorkload) (bool, error) {
		if w.template.Annotations[workload.AnnotationRestartedAt] == at.Format(time.RFC3339) {
			changed = false
			return false, nil
		}
		_, err := w.restart(at)
		changed = err == nil
		return changed, err
	})
	return changed, err
}

// NextRestart is the first whole second at or after now that differs from
// (and follows) the workload's stored restart time, so that a caller who
// records the time it restarts at can tell its restart from an earlier
// one in the same second.
func NextRestart(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, now time.Time) (time.Time, error) {
	w, err := getWorkload(ctx, cs, ref)
	if err != nil {
		return time.Time{}, err
	}
	at := now.UTC().Truncate(time.Second)
	if cur, err := time.Parse(time.RFC3339, w.template.Annotations[workload.AnnotationRestartedAt]); err == nil && !at.After(cur) {
		at = cur.UTC().Add(time.Second)
	}
	return at, nil
}
