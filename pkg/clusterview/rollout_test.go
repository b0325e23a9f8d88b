package clusterview

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestLowerMemoryNeedsRecreate: a lower-memory preemption restarts the
// pods; with a surging rollout the lowered pod starts beside the old one
// (found on a real node: the arbiter lowered again every 12 s). Such a
// Deployment is preempted by scaling to zero, and the view says why.
func TestLowerMemoryNeedsRecreate(t *testing.T) {
	intOrPct := func(s string) *intstr.IntOrString { v := intstr.Parse(s); return &v }
	for _, tc := range []struct {
		name       string
		strategy   appsv1.DeploymentStrategy
		replicas   int32
		action     string
		wantAction policy.Action
	}{
		{name: "default RollingUpdate, 1 replica (maxSurge 25% rounds up to 1)", replicas: 1, action: "lower-memory=0.30", wantAction: policy.ActionScaleToZero},
		{name: "RollingUpdate maxSurge 1", strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intOrPct("1"), MaxUnavailable: intOrPct("1")}}, replicas: 2, action: "lower-memory=0.30", wantAction: policy.ActionScaleToZero},
		{name: "Recreate", strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}, replicas: 1, action: "lower-memory=0.30", wantAction: policy.ActionLowerMemory},
		{name: "RollingUpdate maxSurge 0", strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intOrPct("0"), MaxUnavailable: intOrPct("1")}}, replicas: 1, action: "lower-memory=0.30", wantAction: policy.ActionLowerMemory},
		{name: "RollingUpdate maxSurge 10% of 2 replicas rounds up to 1", strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intOrPct("10%")}}, replicas: 2, action: "lower-memory=0.30", wantAction: policy.ActionScaleToZero},
		{name: "scale-to-zero is left alone", replicas: 1, action: "scale-to-zero", wantAction: policy.ActionScaleToZero},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", Name: "vllm-server", Annotations: map[string]string{
				workload.AnnotationPreemptible: "true", workload.AnnotationPreemptAction: tc.action,
			}}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(tc.replicas), Strategy: tc.strategy}}
			v, err := Read(&Cluster{Deployments: []appsv1.Deployment{d}, Classes: policy.PriorityClasses{}}, Options{Zone: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Workloads) != 1 {
				t.Fatalf("workloads %d, invalid %+v", len(v.Workloads), v.Invalid)
			}
			w := v.Workloads[0]
			if w.Policy.Action != tc.wantAction {
				t.Errorf("action %s, want %s", w.Policy.Action, tc.wantAction)
			}
			adjusted := tc.wantAction != policy.Action(strings.SplitN(tc.action, "=", 2)[0])
			if got := len(w.Adjusted) > 0; got != adjusted {
				t.Errorf("adjusted %q, want adjusted %v", w.Adjusted, adjusted)
			}
			if adjusted && (!strings.Contains(w.Adjusted[0], "Recreate") || !strings.Contains(w.Adjusted[0], "deployment ai-dev/vllm-server")) {
				t.Errorf("adjusted %q: want the fix (Recreate) and the workload named", w.Adjusted)
			}
		})
	}
}
