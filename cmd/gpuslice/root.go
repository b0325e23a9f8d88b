package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/logging"
)

// globals are the flags every subcommand shares.
type globals struct {
	kube *kubeFlags
	log  logging.Flags
}

// command is the life of every command, as of kubectl's: complete what
// the flags leave open (the namespace, the arguments), validate before
// anything runs, then run.
type command interface {
	complete(g *globals, args []string) error
	Validate() error
	run(ctx context.Context, out io.Writer) error
}

// exitError is an error with an exit status of its own (admit's codes);
// any other error exits 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// exitCode is the process's exit status for err.
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// runCommand is the RunE of every command.
func runCommand(g *globals, c command) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := c.complete(g, args); err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return err
		}
		return c.run(cmd.Context(), cmd.OutOrStdout())
	}
}

func newRootCommand() *cobra.Command {
	g := &globals{kube: newKubeFlags()}
	root := &cobra.Command{
		Use:   "gpuslice",
		Short: "Share NVIDIA GPUs between workloads on small Kubernetes clusters",
		Long: `gpuslice shares one or more NVIDIA GPUs between workloads on small Kubernetes
clusters (K3s and friends): it injects GPU devices into annotated pods,
accounts for time-sliced shares and VRAM, and runs the operator's runbooks
as commands.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.log.AddFlags(root.PersistentFlags())
	g.kube.AddFlags(root.PersistentFlags())
	root.AddCommand(newWebhookCommand(g), newDemoCommand(g), newStatusCommand(g), newAdmitCommand(g), newConfigCommand(g), newTuneCommand(g), newReleaseCommand(g), newRestoreCommand(g), newPlexHealthCommand(g), newDoctorCommand(g), newTopCommand(g), newArbiterCommand(g), newHistoryCommand(g), newVersionCommand())
	followBinaryName(root, os.Args[0])
	return root
}

// pluginBinary is the binary's name as a kubectl plugin: kubectl runs
// kubectl-gpuslice from PATH for `kubectl gpuslice`.
const pluginBinary = "kubectl-gpuslice"

// exampleLine matches the command at the start of an example line.
var exampleLine = regexp.MustCompile(`(?m)^(\s*)gpuslice\b`)

// followBinaryName makes help read as the user types the command: installed
// as the kubectl plugin, usage lines and examples say "kubectl gpuslice".
// Cobra takes a command's name from the first word of Use, so the two-word
// name goes in the display-name annotation, as cobra documents for plugins.
func followBinaryName(root *cobra.Command, binary string) {
	if strings.TrimSuffix(filepath.Base(binary), ".exe") != pluginBinary {
		return
	}
	root.Use = pluginBinary
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cobra.CommandDisplayNameAnnotation] = "kubectl gpuslice"
	var rename func(*cobra.Command)
	rename = func(c *cobra.Command) {
		c.Example = exampleLine.ReplaceAllString(c.Example, "${1}kubectl gpuslice")
		for _, sub := range c.Commands() {
			rename(sub)
		}
	}
	rename(root)
}

// logger builds the structured logger every long-running command uses,
// with klog routed into it (internal/logging).
func (g *globals) logger() (*slog.Logger, error) { return g.log.New(os.Stderr) }

// clusterCommand is what every command that reads the cluster shares:
// its -o, the namespace it works in, and the kubeconfig flags Run makes a
// client from (in Run, so that a bad -o is reported without a kubeconfig).
type clusterCommand struct {
	print     *printFlags
	namespace string
	kube      *kubeFlags
}

// completeIn is the namespace step for scope.
func (c *clusterCommand) completeIn(g *globals, scope int) (err error) {
	c.kube = g.kube
	c.namespace, err = g.kube.namespace(scope)
	return err
}

func (c *clusterCommand) Validate() error { return c.print.Validate() }
