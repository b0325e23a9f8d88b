package arbiter

import (
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/ops"
)

// Object is the Deployment or StatefulSet ref names, nil when the cluster
// has none: what an Event about the workload is recorded on (the
// webhook's admission gate records break-glass admissions so).
func (c *Cluster) Object(ref ops.Ref) runtime.Object { return c.object(ref) }
