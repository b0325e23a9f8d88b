package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func newReleaseCommand(g *globals) *cobra.Command {
	var opts ops.ReleaseOptions
	cmd := &cobra.Command{
		Use:   "release WORKLOAD",
		Short: "Scale a workload to zero (or suspend a CronJob) to free its GPU, remembering what to restore",
		Long: `Scale a Deployment or StatefulSet to zero to free its GPU shares and memory
(the seed's "Emergency GPU Release"), and record on it, in the same write,
the replicas it had (gpuslice.io/released-replicas), when
(gpuslice.io/released-at), by whom (gpuslice.io/released-by) and why
(gpuslice.io/released-reason, from --reason). gpuslice restore brings that
many back.

A CronJob (cj/NAME) is suspended instead, and so are its running Jobs (the
Job controller stops their pods); each Job gpuslice suspends carries its
own released-by and released-at. gpuslice restore resumes those Jobs and
the CronJob, unless the CronJob was already suspended before the release.

Releasing a released workload, or one already at 0 replicas, changes
nothing and says so. A workload annotated gpuslice.io/protected: "true"
(Plex in the reference cluster) is refused.`,
		Example: `  gpuslice release vllm-server -n ai-dev --reason "Plex transcodes stutter"
  gpuslice release deploy/whisper -n ai --dry-run
  gpuslice release cj/nightly-training -n ai --reason "Plex movie night"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeWorkloads(g, ops.CompleteOptions{CronJobs: true}),
	}
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, recorded in gpuslice.io/released-reason")
	cmd.Flags().StringVar(&opts.By, "by", "", "who, recorded in gpuslice.io/released-by (default: the Kubernetes user)")
	newOpsCommand(cmd, g, &opts.DryRun, func(ctx context.Context, cs kubernetes.Interface, ref workload.Ref) (ops.Result, error) {
		return ops.Release(ctx, cs, ref, opts)
	}, ops.WriteResult)
	return cmd
}

func newRestoreCommand(g *globals) *cobra.Command {
	var opts ops.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore WORKLOAD",
		Short: "Bring a released (or lowered) workload back to what it had",
		Long: `Scale a workload released by gpuslice release back to the replica count the
release recorded, and remove the record, in one write. A released CronJob's
Jobs that the release suspended are resumed first, then the CronJob (left
suspended if it was before the release); other Jobs are left alone.

A workload the arbiter preempted with lower-memory (gpuslice.io/lowered-*
annotations) gets its GPU_MEMORY_UTILIZATION back and is restarted, as the
arbiter's own restore does.

A workload that was not released is left alone and says so. One scaled by
hand since its release is set to the recorded count all the same: the
record is what the release promised to bring back; scale it afterwards if
you meant otherwise.`,
		Example:           `  gpuslice restore vllm-server -n ai-dev`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeWorkloads(g, ops.CompleteOptions{Released: true, CronJobs: true}),
	}
	newOpsCommand(cmd, g, &opts.DryRun, func(ctx context.Context, cs kubernetes.Interface, ref workload.Ref) (ops.Result, error) {
		return ops.Restore(ctx, cs, ref, opts)
	}, ops.WriteResult)
	return cmd
}

// opsCommand is what every runbook command (release, restore, tune) is:
// one workload argument resolved in -n or the context's namespace, then
// op, its result printed as data or for people.
type opsCommand[R any] struct {
	clusterCommand
	// extra reads the arguments after the workload, and validate checks
	// the command's own flags; either may be nil.
	extra    func(args []string) error
	validate func() error
	op       func(context.Context, kubernetes.Interface, workload.Ref) (R, error)
	text     func(io.Writer, R) error

	ref workload.Ref
}

// newOpsCommand adds the flags every runbook command has (--dry-run
// into dryRun, -o) to cmd and makes it run op.
func newOpsCommand[R any](cmd *cobra.Command, g *globals, dryRun *bool, op func(context.Context, kubernetes.Interface, workload.Ref) (R, error), text func(io.Writer, R) error) *opsCommand[R] {
	c := &opsCommand[R]{op: op, text: text}
	cmd.Flags().BoolVar(dryRun, "dry-run", false, "check and print what would change; change nothing")
	c.print = addPrintFlags(cmd, false)
	cmd.RunE = runCommand(g, c)
	return c
}

func (c *opsCommand[R]) complete(g *globals, args []string) error {
	if err := c.completeIn(g, scopeObject); err != nil {
		return err
	}
	var err error
	if c.ref, err = workload.ParseRef(args[0], c.namespace); err != nil {
		return err
	}
	if c.extra != nil {
		if err := c.extra(args[1:]); err != nil {
			return err
		}
	}
	return nil
}

func (c *opsCommand[R]) Validate() error {
	if err := c.clusterCommand.Validate(); err != nil {
		return err
	}
	if c.validate != nil {
		return c.validate()
	}
	return nil
}

func (c *opsCommand[R]) run(ctx context.Context, out io.Writer) error {
	cs, err := c.kube.client()
	if err != nil {
		return err
	}
	res, err := c.op(ctx, cs, c.ref)
	if err != nil {
		return err
	}
	return c.print.print(out, res, func(w io.Writer) error { return c.text(w, res) })
}
