package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

type plexHealthOptions struct {
	clusterCommand
	check plexhealth.Options
}

func (o *plexHealthOptions) complete(g *globals, _ []string) error {
	if err := o.completeIn(g, scopeList); err != nil {
		return err
	}
	o.check.Namespace = o.namespace
	if o.check.URL == "" {
		o.check.URL = os.Getenv("PLEX_URL")
	}
	if o.check.Token == "" {
		o.check.Token = os.Getenv("PLEX_TOKEN")
	}
	return nil
}

func (o *plexHealthOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.client()
	if err != nil {
		return err
	}
	o.check.Logs = plexhealth.KubeLogs{Client: cs}
	report, err := plexhealth.Check(ctx, cs, o.check)
	if err != nil {
		return err
	}
	if err := o.print.print(out, report, func(w io.Writer) error { return plexhealth.WriteTable(w, report) }); err != nil {
		return err
	}
	if !report.Healthy {
		return fmt.Errorf("plex-health: %d failure(s), Plex is not healthy", report.Failures)
	}
	return nil
}

func newPlexHealthCommand(g *globals) *cobra.Command {
	o := &plexHealthOptions{}
	opts := &o.check
	cmd := &cobra.Command{
		Use:   "plex-health",
		Short: "Check that Plex runs, answers and transcodes on the GPU",
		Long: `Check Plex after GPU changes (the seed's scripts/check-plex-health.sh, from
"Plex Transcoding Fails After vLLM Deployment").

Failures, which make the command exit non-zero:
  - no pod matches --selector in the namespace, or one is not Running and Ready;
  - with --url: the server does not answer GET /identity within --timeout,
    or (with --plex-token) rejects the token or fails GET /status/sessions.

Warnings, which point at a cause without failing:
  - error lines in the last --log-lines of each container's log, or logs
    that could not be read (it needs get on pods/log);
  - no /dev/nvidia* device mounted (and no nvidia.com/ resource), no
    runtimeClassName, or NVIDIA_DRIVER_CAPABILITIES without video (a Plex
    on Intel Quick Sync, /dev/dri, gets none of these);
  - a transcode that fell back to the CPU: encoded in software although
    hardware was requested (the arbiter preempts at once for it);
  - a hardware transcode slower than real time without being throttled.

With --plex-token each active transcode is listed with whether it runs on the
GPU (NVDEC/NVENC). --url and --plex-token default to $PLEX_URL and $PLEX_TOKEN;
the token is sent as the X-Plex-Token header. -n defaults to media.`,
		Example: `  gpuslice plex-health
  PLEX_TOKEN=... gpuslice plex-health --url http://plex.media.svc:32400
  gpuslice plex-health -n media --selector app.kubernetes.io/name=plex -o json`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	cmd.Flags().StringVar(&opts.Selector, "selector", plexhealth.DefaultSelector, "label selector of the Plex pod(s)")
	cmd.Flags().StringVar(&opts.URL, "url", "", "Plex server URL, e.g. http://plex.media.svc:32400 (default $PLEX_URL)")
	cmd.Flags().StringVar(&opts.Token, "plex-token", "", "Plex token for /status/sessions (default $PLEX_TOKEN)")
	// --token was the first spelling; it shadows the kubeconfig flag --token.
	cmd.Flags().StringVar(&opts.Token, "token", "", "Plex token (deprecated: use --plex-token)")
	_ = cmd.Flags().MarkDeprecated("token", "use --plex-token; --token is the kubeconfig flag elsewhere")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", plexhealth.DefaultTimeout, "how long to wait for each Plex API answer")
	cmd.Flags().Int64Var(&opts.LogLines, "log-lines", plexhealth.DefaultLogLines, "how many recent log lines to scan per container")
	o.print = addPrintFlags(cmd, false)
	return cmd
}
