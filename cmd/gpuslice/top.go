package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/top"
)

type topOptions struct {
	clusterCommand
	top top.Options
}

func (o *topOptions) complete(g *globals, _ []string) error {
	err := o.completeIn(g, scopeList)
	o.top.Namespace = o.namespace
	return err
}

func (o *topOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.client()
	if err != nil {
		return err
	}
	report, err := top.Collect(ctx, cs, o.top)
	if err != nil {
		return err
	}
	return o.print.print(out, report, func(w io.Writer) error { return top.WriteTable(w, report) })
}

func newTopCommand(g *globals) *cobra.Command {
	o := &topOptions{}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the GPU memory each pod holds, from the node agents, beside its budget",
		Long: `Show the GPU memory each pod actually holds, like kubectl top, most first,
beside the budget it declares: its gpu-memory annotation ("2Gi-4Gi"), or
GPU_MEMORY_UTILIZATION (vLLM) times the GPU's memory. Pods above the top of
their budget are flagged "over budget"; GPU pods holding nothing are "idle".
Memory held by host processes or by pods the API server does not list shows
as its own rows (without -n). One line per GPU follows.

The figures come from the gpuslice agents (gpuslice agent, a DaemonSet):
their pods are found by --agent-selector in --agent-namespace and scraped
through the API server's pods proxy (get pods/proxy), so no network path to
the nodes is needed. --agent-url scrapes agents directly instead, for example
through kubectl port-forward.`,
		Example: `  gpuslice top
  gpuslice top -n ai-dev
  gpuslice top --node homelabai -o json
  kubectl -n gpu-system port-forward ds/gpuslice-agent 9400 &
  gpuslice top --agent-url http://127.0.0.1:9400/metrics`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	f := cmd.Flags()
	f.StringVar(&o.top.Node, "node", "", "only this node's agent")
	o.print = addPrintFlags(cmd, false)
	f.StringVar(&o.top.AgentNamespace, "agent-namespace", top.DefaultAgentNamespace, "namespace of the agent pods")
	f.StringVar(&o.top.AgentSelector, "agent-selector", top.DefaultAgentSelector, "label selector of the agent pods")
	f.IntVar(&o.top.AgentPort, "agent-port", agent.DefaultPort, "port the agents listen on (the agent's --listen-address)")
	f.StringSliceVar(&o.top.AgentURLs, "agent-url", nil, "scrape these agent /metrics URLs directly instead of through the pods proxy (repeatable)")
	return cmd
}
