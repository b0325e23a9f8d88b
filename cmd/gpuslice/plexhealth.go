package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/output"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

func newPlexHealthCommand(g *globals) *cobra.Command {
	opts := plexhealth.Options{}
	var format string
	cmd := &cobra.Command{
		Use:   "plex-health",
		Short: "Check that Plex runs, answers and transcodes on the GPU",
		Long: `Check Plex after GPU changes (the seed's scripts/check-plex-health.sh, from
"Plex Transcoding Fails After vLLM Deployment").

Failures, which make the command exit non-zero:
  - no pod matches --selector in the namespace, or one is not Running and Ready;
  - with --url: the server does not answer GET /identity within --timeout,
    or (with --token) rejects the token or fails GET /status/sessions.

Warnings, which point at a cause without failing:
  - error lines in the last --log-lines of each container's log, or logs
    that could not be read (it needs get on pods/log);
  - no /dev/nvidia* device mounted (and no nvidia.com/ resource), no
    runtimeClassName, or NVIDIA_DRIVER_CAPABILITIES without video;
  - a transcode encoded in software although hardware was requested, or
    slower than real time without being throttled.

With --token each active transcode is listed with whether it runs on the
GPU (NVDEC/NVENC). --url and --token default to $PLEX_URL and $PLEX_TOKEN;
the token is sent as the X-Plex-Token header. -n defaults to media.`,
		Example: `  gpuslice plex-health
  PLEX_TOKEN=... gpuslice plex-health --url http://plex.media.svc:32400
  gpuslice plex-health -n media --selector app.kubernetes.io/name=plex -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Check(format, false); err != nil {
				return err
			}
			cs, err := g.client()
			if err != nil {
				return err
			}
			opts.Namespace = *g.kube.Namespace
			if opts.URL == "" {
				opts.URL = os.Getenv("PLEX_URL")
			}
			if opts.Token == "" {
				opts.Token = os.Getenv("PLEX_TOKEN")
			}
			opts.Logs = plexhealth.KubeLogs{Client: cs}
			report, err := plexhealth.Check(cmd.Context(), cs, opts)
			if err != nil {
				return err
			}
			if output.IsStructured(format) {
				err = output.Write(cmd.OutOrStdout(), format, report)
			} else {
				err = plexhealth.WriteTable(cmd.OutOrStdout(), report)
			}
			if err != nil {
				return err
			}
			if !report.Healthy {
				return fmt.Errorf("plex-health: %d failure(s), Plex is not healthy", report.Failures)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Selector, "selector", plexhealth.DefaultSelector, "label selector of the Plex pod(s)")
	cmd.Flags().StringVar(&opts.URL, "url", "", "Plex server URL, e.g. http://plex.media.svc:32400 (default $PLEX_URL)")
	cmd.Flags().StringVar(&opts.Token, "token", "", "Plex token for /status/sessions (default $PLEX_TOKEN)")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", plexhealth.DefaultTimeout, "how long to wait for each Plex API answer")
	cmd.Flags().Int64Var(&opts.LogLines, "log-lines", plexhealth.DefaultLogLines, "how many recent log lines to scan per container")
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: table (default), json or yaml")
	return cmd
}
