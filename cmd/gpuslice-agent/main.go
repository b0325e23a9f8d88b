// Command gpuslice-agent is the node agent the chart's DaemonSet runs on
// every GPU node (pkg/agent). It is a binary of its own, beside gpuslice
// in the same image, because it needs so little of gpuslice: built alone,
// without the typed clientset's API groups and the other commands, it is
// half the size, and most of a binary ends up resident (docs/benchmarks.md,
// "Node agent"). This file only wires flags.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/kubeconfig"
	"github.com/gpuslice/gpuslice/internal/logging"
	"github.com/gpuslice/gpuslice/internal/version"
	"github.com/gpuslice/gpuslice/pkg/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

type options struct {
	agent       agent.Options
	kube        *kubeconfig.Flags
	log         logging.Flags
	showVersion bool
}

// complete builds the logger from the flags.
func (o *options) complete() (err error) {
	o.agent.Log, err = o.log.New(os.Stderr)
	return err
}

func (o *options) validate() error {
	if o.agent.NodeName == "" {
		return fmt.Errorf("the agent needs its node's name: set --node-name, or NODE_NAME from the downward API (fieldRef spec.nodeName)")
	}
	return nil
}

// run connects to the API server (in run, so that a flag mistake is told
// before a missing kubeconfig) and serves.
func (o *options) run(ctx context.Context) error {
	cfg, err := o.kube.RestConfig()
	if err != nil {
		return err
	}
	if o.agent.Pods, err = agent.NodePods(cfg, o.agent.NodeName); err != nil {
		return err
	}
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

func newCommand() *cobra.Command {
	o := &options{kube: kubeconfig.NewFlags()}
	cmd := &cobra.Command{
		Use:   "gpuslice-agent",
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
docs/agent.md for the DaemonSet and the metrics. It ships in the gpuslice
image beside gpuslice, as /gpuslice-agent.`,
		Example: `  # in the DaemonSet (NODE_NAME from the downward API)
  gpuslice-agent

  # by hand on a GPU node, with the host's /proc and a kubeconfig
  gpuslice-agent --node-name homelabai --kubeconfig ~/.kube/config --listen-address 127.0.0.1:9400`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.showVersion {
				_, err := fmt.Fprint(cmd.OutOrStdout(), version.Get().Text())
				return err
			}
			if err := o.complete(); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.agent.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node this agent runs on; only its pods are watched (default $NODE_NAME)")
	f.StringVar(&o.agent.ListenAddress, "listen-address", ":9400", "host:port for /metrics, /healthz and /readyz (plain HTTP)")
	f.StringVar(&o.agent.ProcRoot, "proc-root", "/proc", "the host's /proc (with hostPID: true, /proc itself)")
	f.StringVar(&o.agent.NVMLLibrary, "nvml-library", "", "path of libnvidia-ml.so.1 when it is not on the loader's path (default: found by the loader)")
	f.DurationVar(&o.agent.RetryMax, "nvml-retry-max", 5*time.Minute, "longest wait between NVML initialisation attempts while it is unavailable")
	f.DurationVar(&o.agent.ShutdownGrace, "shutdown-grace", 5*time.Second, "time scrapes in flight get to finish on SIGTERM")
	f.BoolVar(&o.showVersion, "version", false, "print the version, the commit it was built from and the Go version, and exit")
	o.log.AddFlags(f)
	o.kube.AddKubeconfigFlag(f)
	return cmd
}
