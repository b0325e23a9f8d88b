package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/agent"
)

type agentOptions struct {
	agent agent.Options
}

func (o *agentOptions) complete(g *globals, _ []string) (err error) {
	if o.agent.Log, err = g.logger(); err != nil {
		return err
	}
	o.agent.Client, err = g.kube.client()
	return err
}

func (o *agentOptions) Validate() error {
	if o.agent.NodeName == "" {
		return fmt.Errorf("the agent needs its node's name: set --node-name, or NODE_NAME from the downward API (fieldRef spec.nodeName)")
	}
	return nil
}

func (o *agentOptions) run(ctx context.Context, _ io.Writer) error {
	a, err := agent.New(o.agent)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.agent.ListenAddress)
	if err != nil {
		return fmt.Errorf("listening on %s: %w; choose another --listen-address", o.agent.ListenAddress, err)
	}
	return a.Serve(ctx, ln)
}

func newAgentCommand(g *globals) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Serve per-pod GPU memory metrics from a GPU node (run as a DaemonSet)",
		Long: `Serve Prometheus metrics on who holds each GPU's memory, per pod and container.

The agent reads every GPU and its processes through NVML (libnvidia-ml.so.1,
loaded at run time: compute and graphics contexts), maps each process to its
pod and container through /proc/PID/cgroup (cgroup v1 and v2, systemd and
cgroupfs drivers; containerd, CRI-O, Docker) and the pods on its node from the
API server. Memory outside any pod is reported by reason, never dropped.

Endpoints on --listen-address (plain HTTP): /metrics, /healthz, /readyz.
Without NVML (no driver library, no GPU) the agent keeps serving: /healthz is
ok, /readyz answers 503 with the reason and the fix, gpuslice_agent_nvml_available
is 0, and NVML is retried with backoff.

Run it with hostPID: true (NVML reports host PIDs), runtimeClassName: nvidia
and NVIDIA_VISIBLE_DEVICES=all, and RBAC to list and watch pods. See
docs/agent.md for the DaemonSet and the metrics.`,
		Example: `  # in the DaemonSet (NODE_NAME from the downward API)
  gpuslice agent

  # by hand on a GPU node, with the host's /proc and a kubeconfig
  gpuslice agent --node-name homelabai --kubeconfig ~/.kube/config --listen-address 127.0.0.1:9400`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	f := cmd.Flags()
	f.StringVar(&o.agent.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node this agent runs on; only its pods are watched (default $NODE_NAME)")
	f.StringVar(&o.agent.ListenAddress, "listen-address", ":9400", "host:port for /metrics, /healthz and /readyz (plain HTTP)")
	f.StringVar(&o.agent.ProcRoot, "proc-root", "/proc", "the host's /proc (with hostPID: true, /proc itself)")
	f.StringVar(&o.agent.NVMLLibrary, "nvml-library", "", "path of libnvidia-ml.so.1 when it is not on the loader's path (default: found by the loader)")
	f.DurationVar(&o.agent.RetryMax, "nvml-retry-max", 5*time.Minute, "longest wait between NVML initialisation attempts while it is unavailable")
	f.DurationVar(&o.agent.ShutdownGrace, "shutdown-grace", 5*time.Second, "time scrapes in flight get to finish on SIGTERM")
	return cmd
}
