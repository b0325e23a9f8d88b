package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/ops"
)

// completeWorkloads completes the first argument of the commands that act
// on one workload (release, restore, tune, doctor) with the GPU
// Deployments and StatefulSets of -n or the context's namespace.
func completeWorkloads(g *globals, opt ops.CompleteOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		namespace, err := g.kube.namespace(scopeObject)
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		cs, err := g.kube.client()
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		// A shell waits on completion: a cluster that does not answer
		// soon gets no suggestions rather than a hung prompt.
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		names, err := ops.WorkloadCompletions(ctx, cs, namespace, toComplete, opt)
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
