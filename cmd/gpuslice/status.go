package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
)

type statusOptions struct {
	clusterCommand
	node string
}

func (o *statusOptions) complete(g *globals, _ []string) error { return o.completeIn(g, scopeList) }

func (o *statusOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.listingClient()
	if err != nil {
		return err
	}
	report, err := snapshot.Ledger(ctx, cs, ledger.Options{Node: o.node, Namespace: o.namespace})
	if err != nil {
		return err
	}
	return o.print.print(out, report, func(w io.Writer) error { return ledger.WriteTable(w, report, o.print.isWide()) })
}

func newStatusCommand(g *globals) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show GPU shares and expected VRAM per node and workload, from the live cluster",
		Long: `Show, for every GPU node, the shares the NVIDIA device plugin advertises
(nvidia.com/gpu.shared and any other nvidia.com/ resource), who holds them,
grouped by Deployment, StatefulSet, DaemonSet, Job or bare pod, and what is
free; then the VRAM each workload is expected to use against the node's
memory, with the over-subscription risk time-slicing leaves open.

Method is "shares" (resource requests), "webhook" (annotation
gpu-directories only: N/A*, its GPU time is not accounted) or "hybrid" (both).
OF REPLICAS is the workload's share of the node's time-slicing replicas: a
place in the scheduler, not a share of GPU time, since time-slicing gives
every process on the GPU an equal slice.
Expected VRAM comes from the annotation gpu-memory ("2Gi" or "2Gi-3Gi"), or
from GPU_MEMORY_UTILIZATION in the workload's env or ConfigMap times the
node's per-GPU memory.`,
		Example: `  gpuslice status
  gpuslice status --node homelabai -n ai
  gpuslice status -o json`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	cmd.Flags().StringVar(&o.node, "node", "", "only this node")
	o.print = addPrintFlags(cmd, true)
	return cmd
}
