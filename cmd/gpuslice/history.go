package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
)

type historyOptions struct {
	clusterCommand
	journal     arbiter.JournalRef
	gateJournal store.Ref
	since       time.Duration
}

func (o *historyOptions) complete(g *globals, _ []string) error {
	// The chart installs the webhook beside the arbiter.
	if o.gateJournal.Namespace == "" {
		o.gateJournal.Namespace = o.journal.Namespace
	}
	return o.completeIn(g, scopeList)
}

func (o *historyOptions) Validate() error {
	if o.since <= 0 {
		return fmt.Errorf("--since %s: want a positive duration such as 72h", o.since)
	}
	return o.clusterCommand.Validate()
}

func (o *historyOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.client()
	if err != nil {
		return err
	}
	j, found, err := arbiter.ReadJournal(ctx, cs, o.journal)
	if err != nil {
		return err
	}
	// An older install, or one without the admission gate, has no gate
	// journal; only when neither is there is something amiss.
	gate, gateFound, err := store.Read(ctx, cs, o.gateJournal)
	if err != nil {
		return err
	}
	if !found && !gateFound {
		return fmt.Errorf("no arbiter journal, %s, nor admission gate journal, %s: is the arbiter installed there? Pass --journal-namespace (the arbiter's namespace)", o.journal, o.gateJournal)
	}
	name := ""
	if found {
		name = o.journal.String()
	}
	h := j.Report(name, time.Now().Add(-o.since), o.namespace)
	if gateFound {
		h.AddGate(o.gateJournal.String(), gate, o.namespace)
	}
	return o.print.print(out, h, h.WriteTable)
}

func newHistoryCommand(g *globals) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show what the arbiter and the admission gate decided: preemptions, restores, refusals, break-glass, newest first",
		Long: `Show the arbiter's and the admission gate's decisions, newest first, with
who decided (BY):

  arbiter  from the journal it keeps in its own namespace (a ConfigMap only
           it and cluster admins write): preemptions and restores with their
           reasons, steps that failed, preemptions that did not take effect in
           time, and annotations or records it refused to believe.
  gate     from the admission gate's journal, which the webhook keeps beside
           it: pods it denied, and pods gpuslice.io/break-glass let in. A
           controller retrying a denied pod is one line with a count.
  admit    from the same journal: gpuslice admit --break-glass overrides.

Each journal keeps the last 500 decisions or 256 KiB. Events say the same but
expire after an hour; the journals do not. A missing gate journal (an older
install, or the gate off) is not an error.

The workloads the arbiter holds preempted now come first, each with the
command that undoes it. -n shows one namespace's workloads only.`,
		Example: `  gpuslice history
  gpuslice history --since 24h -n ai-dev
  gpuslice history --journal-namespace gpuslice -o json`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	f := cmd.Flags()
	f.DurationVar(&o.since, "since", 72*time.Hour, "show decisions this recent")
	f.StringVar(&o.journal.Namespace, "journal-namespace", journal.DefaultNamespace, "namespace of the arbiter (and its journal)")
	f.StringVar(&o.journal.Name, "journal-name", journal.DefaultName, "name of the arbiter's journal ConfigMap (its --journal-name)")
	addGateJournalFlags(f, &o.gateJournal, "", "namespace of the webhook (and the admission gate's journal); default --journal-namespace")
	o.print = addPrintFlags(cmd, false)
	return cmd
}

// addGateJournalFlags adds --gate-journal-namespace (defaulting to
// namespace, described by nsHelp) and --gate-journal-name: where the
// webhook keeps the admission gate's journal.
func addGateJournalFlags(f *pflag.FlagSet, ref *store.Ref, namespace, nsHelp string) {
	f.StringVar(&ref.Namespace, "gate-journal-namespace", namespace, nsHelp)
	f.StringVar(&ref.Name, "gate-journal-name", journal.GateName, "name of the admission gate's journal ConfigMap (the webhook's --journal-name)")
}
