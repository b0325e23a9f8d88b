package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/demo/evening"
	"github.com/gpuslice/gpuslice/internal/table"
)

type demoOptions struct {
	print    *printFlags
	keep     bool
	realNode bool
	demo     demo.Options
}

// playRealNode plays one cycle of the evening on the real node; nil unless
// built with -tags realnode (demo_realnode.go).
var playRealNode func(ctx context.Context, progress io.Writer) (*realNodeResult, error)

// realNodeResult is what demo --real-node measured in its one cycle.
type realNodeResult struct {
	HoldDown string          `json:"holdDown"`
	Grace    string          `json:"terminationGracePeriod"`
	Stages   []realNodeStage `json:"stages"`
}

type realNodeStage struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// errRealNodeNotBuilt and errRealNodeNotRoot say why demo --real-node
// cannot run and what to do instead.
var (
	errRealNodeNotBuilt = errors.New("--real-node: this gpuslice was built without the real node (kubelet, containerd and runc from a source checkout, which would make the release binary 23 MB larger); " +
		"from a gpuslice checkout, as root: go run -tags realnode ./cmd/gpuslice demo --real-node")
	errRealNodeNotRoot = errors.New("--real-node needs root: it runs a kubelet, containerd and runc on this machine, creates /dev/nvidia* device nodes and the bridge gpuslice0; run it with sudo, or run gpuslice demo without --real-node")
)

func (o *demoOptions) complete(g *globals, _ []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	o.demo = demo.Options{Out: os.Stdout, Progress: os.Stderr, Log: log, Keep: o.keep, Evening: evening.Play(log)}
	return nil
}

func (o *demoOptions) Validate() error {
	if o.realNode {
		switch {
		case o.keep:
			return errors.New("--keep and --real-node: the real node is stopped and cleaned up when the demo ends; drop --keep")
		case playRealNode == nil:
			return errRealNodeNotBuilt
		case os.Geteuid() != 0:
			return errRealNodeNotRoot
		}
	}
	return o.print.Validate()
}

func (o *demoOptions) run(ctx context.Context, out io.Writer) error {
	if o.realNode {
		return o.runRealNode(ctx, out)
	}
	if o.print.structured() {
		o.demo.Out = io.Discard
		o.demo.Result = func(r *demo.Result) error { return o.print.print(out, r, nil) }
	} else {
		o.demo.Out = out
	}
	return demo.Run(ctx, o.demo)
}

// runRealNode plays the evening's one cycle on the real node and prints
// the times a Plex viewer waits.
func (o *demoOptions) runRealNode(ctx context.Context, out io.Writer) error {
	r, err := playRealNode(ctx, os.Stderr)
	if err != nil {
		return fmt.Errorf("demo --real-node: %w", err)
	}
	if o.print.structured() {
		return o.print.print(out, r, nil)
	}
	fmt.Fprintf(out, "The evening on the real node: a hardware transcode starts in Plex's /status/sessions, then ends (hold-down %s, vLLM termination grace period %s).\n", r.HoldDown, r.Grace)
	w := table.NewWriter(out)
	fmt.Fprintln(w, "FROM THE TRANSCODE'S START (OR END) TO\tSECONDS")
	for _, s := range r.Stages {
		fmt.Fprintf(w, "%s\t%.3f\n", s.Stage, s.Seconds)
	}
	return w.Flush()
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
KUBEBUILDER_ASSETS to a folder holding the four binaries.

With --real-node (root, a binary built with -tags realnode from a checkout)
the evening runs on a real node instead: kubelet, containerd and runc on
this machine start gpuslice's image, the chart's agent and arbiter, a
stand-in Plex and a stand-in vLLM whose GPU memory the stand-in NVML
reports while its process lives. It prints, for one transcode, the time to
vLLM's replicas 0, its process gone and its memory free in the agent's
metrics, and after the transcode, to vLLM Ready again.`,
		Example: `  go run ./cmd/gpuslice demo
  gpuslice demo -o yaml      # the mutated Plex pod and both ledgers
  gpuslice demo --keep       # leave the cluster running; prints its KUBECONFIG
  sudo go run -tags realnode ./cmd/gpuslice demo --real-node`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep the cluster running until Ctrl-C")
	cmd.Flags().BoolVar(&o.realNode, "real-node", false, "play the evening on a real node (kubelet, containerd, runc); root and -tags realnode")
	o.print = addPrintFlags(cmd, false)
	// The demo's webhook logs are noise next to its story.
	cmd.PreRun = func(*cobra.Command, []string) {
		if !cmd.Flags().Changed("log-level") && !cmd.Root().PersistentFlags().Changed("log-level") {
			g.log.Level = "warn"
		}
	}
	return cmd
}
