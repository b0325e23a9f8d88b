package arbiter

import "github.com/gpuslice/gpuslice/pkg/workload"

// loweredRolledOut says whether a lowered workload's pods run with the
// current phase's fraction: restarted at the phase's time, and the
// rollout finished.
func (w *Workload) loweredRolledOut() bool {
	return w.Template.Annotations[workload.AnnotationRestartedAt] == w.Lowered.PhaseRestart() && w.RolledOut
}
