package main

import (
	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/output"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
)

func newStatusCommand(g *globals) *cobra.Command {
	var node, format string
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
Expected VRAM comes from the annotation gpu-memory ("2Gi" or "2Gi-3Gi"), or
from GPU_MEMORY_UTILIZATION in the workload's env or ConfigMap times the
node's per-GPU memory.`,
		Example: `  gpuslice status
  gpuslice status --node homelabai -n ai
  gpuslice status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Check(format, true); err != nil {
				return err
			}
			cs, err := g.client()
			if err != nil {
				return err
			}
			report, err := snapshot.Ledger(cmd.Context(), cs, ledger.Options{Node: node, Namespace: *g.kube.Namespace})
			if err != nil {
				return err
			}
			if output.IsStructured(format) {
				return output.Write(cmd.OutOrStdout(), format, report)
			}
			return ledger.WriteTable(cmd.OutOrStdout(), report, format == output.Wide)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "only this node")
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: table (default), wide, json or yaml")
	return cmd
}
