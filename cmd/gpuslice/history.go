package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/journal"
)

type historyOptions struct {
	clusterCommand
	journal arbiter.JournalRef
	since   time.Duration
}

func (o *historyOptions) complete(g *globals, _ []string) error { return o.completeIn(g, scopeList) }

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
	if !found {
		return fmt.Errorf("no arbiter journal, %s: is the arbiter installed there? Pass --journal-namespace (the arbiter's namespace)", o.journal)
	}
	h := j.Report(o.journal.String(), time.Now().Add(-o.since), o.namespace)
	return o.print.print(out, h, h.WriteTable)
}

func newHistoryCommand(g *globals) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show what the arbiter did: preemptions, restores, refusals, newest first",
		Long: `Show the arbiter's decisions, newest first, from the journal it keeps in its
own namespace (a ConfigMap only it and cluster admins write, bounded to the
last 500 decisions or 256 KiB): preemptions and restores with their reasons,
steps that failed, preemptions that did not take effect in time, and
annotations or records it refused to believe. Events say the same but expire
after an hour; the journal does not.

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
	o.print = addPrintFlags(cmd, false)
	return cmd
}
