package main

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/demo/evening"
)

type demoOptions struct {
	print *printFlags
	keep  bool
	demo  demo.Options
}

func (o *demoOptions) complete(g *globals, _ []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	o.demo = demo.Options{Out: os.Stdout, Progress: os.Stderr, Log: log, Keep: o.keep, Evening: evening.Play(log)}
	return nil
}

func (o *demoOptions) Validate() error { return o.print.Validate() }

func (o *demoOptions) run(ctx context.Context, out io.Writer) error {
	if o.print.structured() {
		o.demo.Out = io.Discard
		o.demo.Result = func(r *demo.Result) error { return o.print.print(out, r, nil) }
	} else {
		o.demo.Out = out
	}
	return demo.Run(ctx, o.demo)
}

func newDemoCommand(g *globals) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the reference homelab cluster on a local control plane",
		Long: `Start a real local control plane (etcd, kube-apiserver, kube-scheduler,
kube-controller-manager; built from the Go module proxy the first time, about
5-10 minutes), register node homelabai advertising nvidia.com/gpu.shared: 8 as
the time-sliced NVIDIA device plugin would, run and register the device
injection webhook, create the seed's Plex pod and print what it received; then deploy the
seed's workloads (Plex, Ollama, TTS, Whisper) and print the share and VRAM
ledger before and after the AI-dev vLLM deployment. Then play the evening
with the arbiter: a stand-in Plex starts a hardware transcode, the arbiter
scales vLLM to zero, the transcode ends, and vLLM returns after the
hold-down, with the ledger printed at each step.

No GPU and no real cluster are needed. Run it from a gpuslice checkout, or set
KUBEBUILDER_ASSETS to a folder holding the four binaries.`,
		Example: `  go run ./cmd/gpuslice demo
  gpuslice demo -o yaml      # the mutated Plex pod and both ledgers
  gpuslice demo --keep       # leave the cluster running; prints its KUBECONFIG`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep the cluster running until Ctrl-C")
	o.print = addPrintFlags(cmd, false)
	// The demo's webhook logs are noise next to its story.
	cmd.PreRun = func(*cobra.Command, []string) {
		if !cmd.Flags().Changed("log-level") && !cmd.Root().PersistentFlags().Changed("log-level") {
			g.logLevel = "warn"
		}
	}
	return cmd
}
