package main

import (
	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/output"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/top"
)

func newTopCommand(g *globals) *cobra.Command {
	o := top.Options{}
	var format string
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Check(format, false); err != nil {
				return err
			}
			cs, err := g.client()
			if err != nil {
				return err
			}
			o.Namespace = *g.kube.Namespace
			report, err := top.Collect(cmd.Context(), cs, o)
			if err != nil {
				return err
			}
			if output.IsStructured(format) {
				return output.Write(cmd.OutOrStdout(), format, report)
			}
			return top.WriteTable(cmd.OutOrStdout(), report)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Node, "node", "", "only this node's agent")
	f.StringVarP(&format, "output", "o", "", "output format: table (default), json or yaml")
	f.StringVar(&o.AgentNamespace, "agent-namespace", top.DefaultAgentNamespace, "namespace of the agent pods")
	f.StringVar(&o.AgentSelector, "agent-selector", top.DefaultAgentSelector, "label selector of the agent pods")
	f.IntVar(&o.AgentPort, "agent-port", agent.DefaultPort, "port the agents listen on (the agent's --listen-address)")
	f.StringSliceVar(&o.AgentURLs, "agent-url", nil, "scrape these agent /metrics URLs directly instead of through the pods proxy (repeatable)")
	return cmd
}
