package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/output"
	"github.com/gpuslice/gpuslice/pkg/ops"
)

func newReleaseCommand(g *globals) *cobra.Command {
	var (
		opts   ops.ReleaseOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "release WORKLOAD",
		Short: "Scale a workload to zero to free its GPU, remembering its replicas for restore",
		Long: `Scale a Deployment or StatefulSet to zero to free its GPU shares and memory
(the seed's "Emergency GPU Release"), and record on it, in the same write,
the replicas it had (gpuslice.io/released-replicas), when
(gpuslice.io/released-at), by whom (gpuslice.io/released-by) and why
(gpuslice.io/released-reason, from --reason). gpuslice restore brings that
many back.

Releasing a released workload, or one already at 0 replicas, changes
nothing and says so. A workload annotated gpuslice.io/protected: "true"
(Plex in the reference cluster) is refused.`,
		Example: `  gpuslice release vllm-server -n ai-dev --reason "Plex transcodes stutter"
  gpuslice release deploy/whisper -n ai --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOp(cmd, g, args[0], format, func(ctx context.Context, cs kubernetes.Interface, ref ops.Ref) (ops.Result, error) {
				return ops.Release(ctx, cs, ref, opts)
			}, ops.WriteResult)
		},
	}
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, recorded in gpuslice.io/released-reason")
	cmd.Flags().StringVar(&opts.By, "by", "", "who, recorded in gpuslice.io/released-by (default: the Kubernetes user)")
	addOpsFlags(cmd, &opts.DryRun, &format)
	return cmd
}

func newRestoreCommand(g *globals) *cobra.Command {
	var (
		opts   ops.RestoreOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "restore WORKLOAD",
		Short: "Bring a released workload back to the replicas it had",
		Long: `Scale a workload released by gpuslice release back to the replica count the
release recorded, and remove the record, in one write.

A workload that was not released is left alone and says so. One scaled by
hand since its release is set to the recorded count all the same: the
record is what the release promised to bring back; scale it afterwards if
you meant otherwise.`,
		Example: `  gpuslice restore vllm-server -n ai-dev`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOp(cmd, g, args[0], format, func(ctx context.Context, cs kubernetes.Interface, ref ops.Ref) (ops.Result, error) {
				return ops.Restore(ctx, cs, ref, opts)
			}, ops.WriteResult)
		},
	}
	addOpsFlags(cmd, &opts.DryRun, &format)
	return cmd
}

// runOp is what every ops command does: check -o, resolve the workload,
// run op, print its result as data or for people.
func runOp[R any](cmd *cobra.Command, g *globals, arg, format string, op func(context.Context, kubernetes.Interface, ops.Ref) (R, error), text func(io.Writer, R) error) error {
	if err := output.Check(format, false); err != nil {
		return err
	}
	ref, cs, err := opsTarget(g, arg)
	if err != nil {
		return err
	}
	res, err := op(cmd.Context(), cs, ref)
	if err != nil {
		return err
	}
	if output.IsStructured(format) {
		return output.Write(cmd.OutOrStdout(), format, res)
	}
	return text(cmd.OutOrStdout(), res)
}

// addOpsFlags adds the flags every ops command has.
func addOpsFlags(cmd *cobra.Command, dryRun *bool, format *string) {
	cmd.Flags().BoolVar(dryRun, "dry-run", false, "check and print what would change; change nothing")
	cmd.Flags().StringVarP(format, "output", "o", "", "output format: table (default), json or yaml")
}

// opsTarget resolves a WORKLOAD argument in the namespace of -n, else the
// kubeconfig context's, as kubectl does, and returns a client.
func opsTarget(g *globals, arg string) (ops.Ref, kubernetes.Interface, error) {
	ns, _, err := g.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return ops.Ref{}, nil, fmt.Errorf("finding the namespace: %w; pass -n NAMESPACE", err)
	}
	ref, err := ops.ParseRef(arg, ns)
	if err != nil {
		return ops.Ref{}, nil, err
	}
	cs, err := g.client()
	return ref, cs, err
}
