package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/admit"
	"github.com/gpuslice/gpuslice/pkg/admit/live"
	"github.com/gpuslice/gpuslice/pkg/gate"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

type admitOptions struct {
	clusterCommand
	files          []string
	breakGlass     bool
	reason         string
	injectorConfig string
	trust          trustFlags
	gateJournal    store.Ref
	stdin          func() io.Reader
	judge          admit.Options
	targets        []admit.Target
	skipped        []admit.Skipped
}

func (o *admitOptions) complete(g *globals, _ []string) error {
	if err := o.completeIn(g, scopeObject); err != nil {
		return err
	}
	if o.injectorConfig != "" {
		var err error
		if o.judge.Injector, err = inject.LoadConfig(o.injectorConfig, registration.DefaultNamespace); err != nil {
			return err
		}
	}
	o.judge.BreakGlass = strings.TrimSpace(o.reason)
	var err error
	o.judge.Trust, err = o.trust.trust()
	return err
}

func (o *admitOptions) Validate() error {
	if err := o.clusterCommand.Validate(); err != nil {
		return err
	}
	switch {
	case len(o.files) == 0:
		return errors.New("no manifest: pass -f FILE, or -f - for standard input")
	case o.breakGlass && o.judge.BreakGlass == "":
		return errors.New("--break-glass needs --reason TEXT saying why (it is printed and recorded as an Event)")
	case !o.breakGlass && o.reason != "":
		return errors.New("--reason is only for --break-glass: add --break-glass to override the gate, or drop --reason")
	}
	// The manifest is input: a bad one is reported before the cluster is read.
	var err error
	o.targets, o.skipped, err = admit.ReadAll(o.files, func(name string) ([]byte, error) { return readFileOrStdin(name, o.stdin()) }, o.namespace)
	return err
}

func (o *admitOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.client()
	if err != nil {
		return exitWith(int(gate.CodeClusterUnreadable), err)
	}
	report, err := live.Admit(ctx, cs, o.targets, o.skipped, o.judge, o.gateJournal)
	if errors.Is(err, live.ErrUnreadable) {
		return exitWith(int(gate.CodeClusterUnreadable), err)
	}
	if err != nil {
		return err
	}
	if err := o.print.print(out, report, func(w io.Writer) error { return admit.WriteTable(w, report) }); err != nil {
		return err
	}
	if report.Code != gate.CodeOK {
		return exitWith(int(report.Code), fmt.Errorf("admit: exit code %s", admit.Describe(report.Code)))
	}
	return nil
}

func newAdmitCommand(g *globals) *cobra.Command {
	o := &admitOptions{}
	cmd := &cobra.Command{
		Use:   "admit -f MANIFEST",
		Short: "Say whether a manifest's GPU workloads can start now, with check-gpu-admission.sh's exit codes",
		Long: `Judge every Deployment, StatefulSet, Job, CronJob and Pod of a manifest
(multi-document YAML, or JSON; -f - reads standard input) against the live
cluster with the admission gate's own decision, before a deploy script
applies it. Pods get what the device-injection webhook would give them
(gpu-shares becomes a request), and a workload applied again counts the
shares its current pods hold as its own.

Exit codes (the cluster owner's check-gpu-admission.sh):
   0  every workload can start now
  10  free shares below the request (all replicas counted)
  11  the request exceeds what any GPU node can ever allocate
  20  a protected workload (Plex) on a target node is not Running and Ready
  30  the target GPU node is missing or NotReady (a NotReady node has no free shares)
  31  the cluster could not be read
When several apply, the first of 31, 11, 30, 20, 10 is returned; every
problem is printed. Bad input (a manifest that does not parse) exits 1.

--break-glass --reason TEXT lets 10 and 20 through (exit 0), prints the
override, records a BreakGlass Event on the workload and adds it to the
admission gate's journal for gpuslice history (if you may write it: if not,
a warning says what to grant); it cannot help 11 or 30. The webhook's
admission gate still refuses the pods of a preemptible workload unless their
template carries gpuslice.io/break-glass=REASON.

--protected and --trusted-namespace decide, as in the admission gate, which
workloads are protected and whose gpuslice.io/protected and
gpuslice.io/priority annotations are believed: pass the webhook's values (the
chart's arbiter.protected and arbiter.trustedNamespaces), or admit may answer
otherwise than the gate.`,
		Example: `  gpuslice admit -f examples/vllm.yaml
  kubectl kustomize overlays/ai | gpuslice admit -f - -o json
  gpuslice admit -f vllm.yaml --break-glass --reason "demo at 3pm, Plex idle"`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	o.stdin = cmd.InOrStdin
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file, or - for standard input (repeatable)")
	f.BoolVar(&o.breakGlass, "break-glass", false, "let shares or Plex problems through (exit 0); needs --reason; recorded as an Event and in the admission gate's journal")
	f.StringVar(&o.reason, "reason", "", "why --break-glass is needed, for the Event")
	f.StringVar(&o.injectorConfig, "injector-config", "", "the webhook's --config file, for device profiles beyond the built-in nvidia")
	o.trust.addFlags(f, []string{defaultPlexWorkload}, " (as the webhook's --protected: match it)")
	addGateJournalFlags(f, &o.gateJournal, journal.DefaultNamespace, "namespace of the webhook (and the admission gate's journal), where --break-glass is recorded")
	o.print = addPrintFlags(cmd, false)
	return cmd
}
