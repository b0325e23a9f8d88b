package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/top"
)

type arbiterOptions struct {
	arbiter               arbiter.Options
	sources               sourceFlags
	minFree, margin, zone string
	listen                string
	grace                 time.Duration
	faultCheckpoints      bool
	trust                 trustFlags
}

func (o *arbiterOptions) complete(g *globals, _ []string) (err error) {
	if o.arbiter.Log, err = g.logger(); err != nil {
		return err
	}
	o.arbiter.Client, err = g.kube.client()
	return err
}

// Validate reads the flags that need parsing, and builds the signal
// sources, before anything runs.
func (o *arbiterOptions) Validate() (err error) {
	a := &o.arbiter
	if a.Config.MinFree, err = parseBytes("--min-free-memory", o.minFree); err != nil {
		return err
	}
	if a.Config.Margin, err = parseBytes("--memory-margin", o.margin); err != nil {
		return err
	}
	if a.Zone, err = time.LoadLocation(o.zone); err != nil {
		return fmt.Errorf("--time-zone %q: not an IANA time zone, e.g. Europe/Berlin", o.zone)
	}
	if a.Sources, err = o.sources.build(a.Client); err != nil {
		return err
	}
	if a.Journal.Namespace == "" {
		a.Journal.Namespace = a.LeaderElection.Namespace
	}
	if a.Config.Protected, err = o.trust.refs(o.sources.PlexWorkload); err != nil {
		return err
	}
	a.Config.TrustedNamespaces = o.trust.namespaces
	if o.faultCheckpoints {
		a.Checkpoint = pauseAtCheckpoint()
	}
	return nil
}

func (o *arbiterOptions) run(ctx context.Context, _ io.Writer) error {
	ln, err := arbiter.Listen(o.listen)
	if err != nil {
		return err
	}
	return arbiter.New(o.arbiter).Serve(ctx, ln, o.grace)
}

func newArbiterCommand(g *globals) *cobra.Command {
	o := &arbiterOptions{}
	src := &o.sources
	cmd := &cobra.Command{
		Use:   "arbiter",
		Short: "Preempt and restore preemptible GPU workloads when Plex, memory or the clock need the GPU",
		Long: `Run the GPU arbiter: a controller that frees a GPU node for its protected
workloads (Plex) by preempting preemptible ones (vLLM), one at a time, lowest
priority first, and restores them in reverse order once the node has stayed
clear for the hold-down time.

A node is under pressure when one of its GPUs has less than --min-free-memory
free (from dcgm-exporter, Prometheus or gpuslice agents), when a protected
workload on it is active (a Plex hardware transcode; one that fell back to the
CPU is urgent and preempts at once) or has been unhealthy for
--unhealthy-grace. It is clear again only with --memory-margin more free
memory than the threshold (hysteresis), and a workload comes back only if its
expected memory leaves that much. A preemptible workload outside its active
hours stays released. Releases by anyone else are never undone.

Who is protected comes from this command's flags (--protected, --plex-workload),
which only a cluster admin controls. Policy is read from annotations on each
Deployment or StatefulSet; outside a --trusted-namespace they may only lower
a workload's standing:
  gpuslice.io/protected: "true"          only in a --trusted-namespace: never preempted; its activity and health count
  gpuslice.io/preemptible: "true"        may be preempted
  gpuslice.io/priority: "100"            default: the pod template's PriorityClass value; above it only in a --trusted-namespace
  gpuslice.io/active-hours: "07:00-19:00" with gpuslice.io/time-zone: "Europe/Berlin"
  gpuslice.io/preempt-action: scale-to-zero | lower-memory=0.30
  gpuslice.io/hold-down: "10m"

Every write records what a restart needs (the replicas to restore), so the
arbiter can be killed at any point. Run two replicas: a Lease elects the one
that acts. Endpoints on --listen-address: /metrics, /healthz, /readyz. See
docs/arbiter.md.`,
		Example: `  # in the cluster, with dcgm-exporter on the GPU node and Plex's API
  gpuslice arbiter --dcgm-exporter homelabai=http://10.0.0.5:9400/metrics \
    --plex-url http://plex.media.svc:32400 --plex-token-file /var/run/plex/token

  # see what it would do, without changing anything
  gpuslice arbiter --dry-run --leader-elect=false --kubeconfig ~/.kube/config --agents`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen-address", ":9402", "host:port for /metrics, /healthz and /readyz (plain HTTP)")
	f.DurationVar(&o.arbiter.Interval, "interval", time.Second, "how often the signals are sampled; cluster changes start a round at once")
	f.StringVar(&o.minFree, "min-free-memory", "1Gi", "a GPU with less free memory than this is under pressure")
	f.StringVar(&o.margin, "memory-margin", "1Gi", "hysteresis: pressure ends only with this much more free, and a restore must leave it")
	f.DurationVar(&o.arbiter.Config.HoldDown, "hold-down", 5*time.Minute, "how long a node must stay clear before a restore (per workload: gpuslice.io/hold-down)")
	f.DurationVar(&o.arbiter.Config.UnhealthyGrace, "unhealthy-grace", 30*time.Second, "how long a protected workload may be unhealthy before it counts")
	f.StringVar(&o.zone, "time-zone", envOr("TZ", "UTC"), "time zone of active hours without gpuslice.io/time-zone (default $TZ or UTC)")
	f.StringArrayVar(&src.DCGMExporters, "dcgm-exporter", nil, "dcgm-exporter /metrics URL, or NODE=URL; repeat for each node")
	f.StringVar(&src.PrometheusURL, "prometheus-url", "", "Prometheus server that scrapes dcgm-exporter (reads DCGM_FI_DEV_FB_FREE and _USED)")
	f.StringVar(&src.PrometheusSelector, "prometheus-selector", signals.DefaultPrometheusSelector, "label matchers picking dcgm-exporter's series in Prometheus; other series with DCGM names are ignored")
	f.StringVar(&src.NodeLabel, "node-label", "", "label naming the node in DCGM series (default Hostname)")
	f.BoolVar(&src.Agents, "agents", false, "read GPU memory from gpuslice's node agents (through the API server)")
	f.StringVar(&src.AgentNamespace, "agent-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the agent pods (default $POD_NAMESPACE; empty: all namespaces)")
	f.StringVar(&src.AgentSelector, "agent-selector", top.DefaultAgentSelector, "label selector of the agent pods")
	f.IntVar(&src.AgentPort, "agent-port", agent.DefaultPort, "the agents' metrics port")
	f.StringVar(&src.PlexURL, "plex-url", os.Getenv("PLEX_URL"), "Plex server URL; its hardware transcodes are activity (default $PLEX_URL)")
	f.StringVar(&src.PlexTokenFile, "plex-token-file", "", "file holding the Plex token (default: $PLEX_TOKEN)")
	f.StringVar(&src.PlexWorkload, "plex-workload", defaultPlexWorkload, "the protected workload that is Plex (protected by this flag): NAMESPACE/NAME or NAMESPACE/KIND/NAME")
	o.trust.addFlags(f, nil, " (--plex-workload is one)")
	f.DurationVar(&o.arbiter.Config.PreemptTimeout, "preempt-timeout", arbiter.DefaultPreemptTimeout, "how long to wait for a preemption to take effect (pods gone, restart rolled out) before an event and the next step")
	f.StringVar(&o.arbiter.Journal.Namespace, "journal-namespace", "", "namespace of the arbiter's journal ConfigMap (default: the Lease's, --leader-elect-namespace)")
	f.StringVar(&o.arbiter.Journal.Name, "journal-name", journal.DefaultName, "name of the arbiter's journal ConfigMap: what it holds preempted, and its history")
	f.DurationVar(&src.Timeout, "signal-timeout", 2*time.Second, "how long one signal source may take to answer")
	f.BoolVar(&o.arbiter.DryRun, "dry-run", false, "log and event what would be done, change nothing")
	le := &o.arbiter.LeaderElection
	f.BoolVar(&le.Enabled, "leader-elect", true, "hold a Lease so that only one replica acts")
	f.StringVar(&le.Namespace, "leader-elect-namespace", envOr("POD_NAMESPACE", "gpuslice"), "namespace of the Lease (default $POD_NAMESPACE or gpuslice)")
	f.StringVar(&le.Name, "leader-elect-name", "gpuslice-arbiter", "name of the Lease")
	f.StringVar(&le.Identity, "leader-elect-identity", hostname(), "this replica's name in the Lease (default $POD_NAME or the host name)")
	f.DurationVar(&le.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a lease lasts without renewal")
	f.DurationVar(&le.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up")
	f.DurationVar(&le.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often to try for the lease")
	f.DurationVar(&o.grace, "shutdown-grace", 5*time.Second, "time requests in flight get to finish on SIGTERM")
	f.BoolVar(&o.faultCheckpoints, "fault-checkpoints", false, "testing: stop at each checkpoint between writes until a line arrives on stdin")
	_ = f.MarkHidden("fault-checkpoints")
	src.PlexToken = os.Getenv("PLEX_TOKEN")
	return cmd
}

// pauseAtCheckpoint lets a fault-injection test kill the process between
// two writes: it names each checkpoint on stderr and waits for a line.
func pauseAtCheckpoint() func(string) {
	in := bufio.NewReader(os.Stdin)
	return func(name string) {
		fmt.Fprintf(os.Stderr, "gpuslice-checkpoint %s\n", name)
		_, _ = in.ReadString('\n')
	}
}

func parseBytes(flag, s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("%s %q: want a size such as 1Gi or 512Mi", flag, s)
	}
	return q.Value(), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func hostname() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, err := os.Hostname()
	if err != nil {
		return "gpuslice-arbiter"
	}
	return h
}
