package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func newTuneCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Change a workload's GPU memory fraction or GPU share count",
		Long: `Change a workload's GPU memory fraction or GPU share count: the seed's
"Tuning GPU Allocation" runbooks (kubectl edit, then kubectl rollout restart)
as one checked command.

A workload is deploy/NAME, sts/NAME, or a bare NAME for a Deployment, in the
namespace of -n (or the kubeconfig context).`,
	}
	cmd.AddCommand(newTuneMemoryCommand(g), newTuneSharesCommand(g))
	return cmd
}

func newTuneMemoryCommand(g *globals) *cobra.Command {
	var opts ops.MemoryOptions
	cmd := &cobra.Command{
		Use:   "memory WORKLOAD --fraction F",
		Short: "Set GPU_MEMORY_UTILIZATION where the workload reads it, and restart what reads it",
		Long: `Set GPU_MEMORY_UTILIZATION (vLLM's share of one GPU's memory, in (0, 1])
where the workload reads it: the ConfigMap it takes it from (envFrom, or an
env entry's configMapKeyRef) or the env value in its pod template, resolved
container by container as the kubelet does. Then restart it as
kubectl rollout restart does (pod template annotation
kubectl.kubernetes.io/restartedAt).

When the value lives in a ConfigMap, every other Deployment and StatefulSet
in the namespace that reads that key as environment is restarted too, and
listed; one that mounts the ConfigMap as a volume is listed, not restarted.
Old and new values are shown with their bytes: the fraction times the GPU
memory of the workload's node, from the same ledger as gpuslice status.

A raise that makes the node's expected VRAM (gpuslice status's potential
total, with this workload at the new fraction) exceed its GPU memory is
refused with the largest fraction that fits, unless --allow-overcommit.

Nothing is written until every check passes (the workload reads the
variable, no restart would be refused); each object then gets one patch.
A value already equal changes and restarts nothing.`,
		Example: `  # The seed's "Reducing vLLM GPU Memory"
  gpuslice tune memory vllm-server --fraction 0.6 -n ai-dev
  gpuslice tune memory deploy/vllm-server --fraction 0.5 -n ai-dev --dry-run`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeWorkloads(g, ops.CompleteOptions{}),
	}
	cmd.Flags().StringVar(&opts.Fraction, "fraction", "", "new GPU_MEMORY_UTILIZATION, in (0, 1]")
	cmd.Flags().BoolVar(&opts.AllowOvercommit, "allow-overcommit", false, "raise even when the node's expected VRAM would exceed its GPU memory")
	c := newOpsCommand(cmd, g, &opts.DryRun, func(ctx context.Context, cs kubernetes.Interface, ref workload.Ref) (ops.MemoryResult, error) {
		return ops.TuneMemory(ctx, cs, ref, opts)
	}, ops.WriteMemory)
	c.validate = func() error {
		if opts.Fraction == "" {
			return fmt.Errorf("--fraction is required: the new GPU_MEMORY_UTILIZATION, in (0, 1], e.g. --fraction 0.6")
		}
		return nil
	}
	return cmd
}

func newTuneSharesCommand(g *globals) *cobra.Command {
	var opts ops.SharesOptions
	cmd := &cobra.Command{
		Use:   "shares WORKLOAD N",
		Short: "Set a workload's GPU share request and limit, if its node can give them",
		Long: `Set the requests and limits of nvidia.com/gpu.shared (or the GPU resource
the container already requests, or --resource) to N on the container that
has it (or --container), in one patch; the pods roll out.

It first checks the live ledger (as gpuslice status shows it): the free
shares on the workload's node(s) plus those it holds must cover the
rollout. A RollingUpdate whose maxUnavailable comes to 0 (the default below
4 replicas) starts each new pod before stopping an old one, so the new pods
need room beside the old ones; Recreate and StatefulSets need N x replicas.
A refusal gives the numbers and who holds the rest. A released workload is
counted with the replicas restore brings back.

More shares do not buy more GPU time: under time-slicing every process on
the GPU gets an equal slice whatever it requested. Shares only reserve the
node's replicas, so fewer other pods are scheduled beside it; to give a
workload the GPU, release the others (gpuslice release). The device
plugin's failRequestsGreaterThanOne: true refuses requests above 1, which
makes that explicit (docs/status.md).`,
		Example: `  # The seed's "Increasing vLLM GPU Shares"
  gpuslice tune shares vllm-server 4 -n ai-dev
  gpuslice tune shares deploy/whisper 1 -n ai --container whisper --dry-run`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeWorkloads(g, ops.CompleteOptions{}),
	}
	cmd.Flags().StringVar(&opts.Container, "container", "", "container to change (default: the one requesting a GPU resource)")
	cmd.Flags().StringVar(&opts.Resource, "resource", "", "GPU resource (default: the one the container requests, else nvidia.com/gpu.shared)")
	c := newOpsCommand(cmd, g, &opts.DryRun, func(ctx context.Context, cs kubernetes.Interface, ref workload.Ref) (ops.SharesResult, error) {
		return ops.TuneShares(ctx, cs, ref, opts)
	}, ops.WriteShares)
	c.extra = func(args []string) error {
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return fmt.Errorf("share count %q: want a whole number, e.g. 4", args[0])
		}
		opts.Shares = n
		return nil
	}
	return cmd
}
