package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/gate/live"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/webhook"
)

type webhookOptions struct {
	server          webhook.RunOptions
	admissionGate   bool
	tlsMinVersion   string
	tlsCipherSuites []string
	trust           trustFlags
}

func (o *webhookOptions) complete(g *globals, _ []string) (err error) {
	if o.server.Log, err = g.logger(); err != nil {
		return err
	}
	if o.server.SelfSigned || o.server.Register || o.admissionGate {
		if o.server.Client, err = g.kube.client(); err != nil {
			return err
		}
	}
	return nil
}

// Validate refuses flag combinations that cannot serve, before anything
// starts.
func (o *webhookOptions) Validate() (err error) {
	r := &o.server
	if r.TLS, err = webhook.ParseTLSOptions(o.tlsMinVersion, o.tlsCipherSuites); err != nil {
		return err
	}
	if o.admissionGate {
		trust, err := o.trust.trust()
		if err != nil {
			return err
		}
		r.Gate = live.New(live.Options{Client: r.Client, Trust: trust})
	}
	switch {
	case r.Limits.MaxConcurrent < 0:
		return fmt.Errorf("--max-concurrent-admissions %d: give at least 1", r.Limits.MaxConcurrent)
	case r.SelfSigned && (r.CertFile != "" || r.KeyFile != ""):
		return errors.New("--self-signed and --tls-cert-file/--tls-private-key-file exclude each other: pick one way to get certificates")
	case !r.SelfSigned && (r.CertFile == "" || r.KeyFile == ""):
		return errors.New("no serving certificate: give --tls-cert-file and --tls-private-key-file, or --self-signed")
	}
	return nil
}

func (o *webhookOptions) run(ctx context.Context, _ io.Writer) error {
	return webhook.Run(ctx, o.server)
}

func newWebhookCommand(g *globals) *cobra.Command {
	o := &webhookOptions{}
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the device-injection admission webhook (gpu-directory-injector)",
		Long: `Serve the mutating admission webhook that gives pods annotated
"gpu-directories: nvidia" the NVIDIA device nodes (/dev/nvidia0, /dev/nvidiactl,
/dev/nvidia-uvm) and runtimeClassName nvidia, and pods annotated
"gpu-shares: N" their nvidia.com/gpu.shared requests.

Endpoints on --listen-address (HTTPS): /mutate, /healthz, /readyz, /metrics.
With --metrics-address, /metrics, /healthz and /readyz also over plain HTTP.

With --admission-gate, new pods of workloads annotated
gpuslice.io/preemptible are refused while a gpuslice.io/protected workload
on a node they may land on is unhealthy, or while no such node has the free
shares they request; gpuslice.io/break-glass=REASON on the pod template lets
them in, logged and evented. Both are kept, repeats counted, in the ConfigMap
--journal-name for gpuslice history.

Certificates come either from files (cert-manager), reloaded without a restart
when they change, or with --self-signed from a CA that gpuslice keeps in a
Secret, which it also writes into the registration's caBundle.`,
		Example: `  # in a pod, self-signed, registering itself
  gpuslice webhook --self-signed --register

  # with cert-manager's Secret mounted at /certs
  gpuslice webhook --tls-cert-file /certs/tls.crt --tls-private-key-file /certs/tls.key`,
		Args: cobra.NoArgs,
		RunE: runCommand(g, o),
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = registration.DefaultNamespace
	}
	f := cmd.Flags()
	f.StringVar(&o.server.ListenAddress, "listen-address", ":8443", "host:port for HTTPS (/mutate, /healthz, /readyz, /metrics)")
	f.StringVar(&o.server.MetricsAddress, "metrics-address", "", "host:port for plain-HTTP /metrics, /healthz and /readyz (off when empty)")
	f.StringVar(&o.server.CertFile, "tls-cert-file", "", "serving certificate (PEM); reloaded when the file changes")
	f.StringVar(&o.server.KeyFile, "tls-private-key-file", "", "serving certificate's private key (PEM)")
	f.BoolVar(&o.server.SelfSigned, "self-signed", false, "issue serving certificates from a CA kept in --ca-secret and trust it in the registration's caBundle")
	f.StringVar(&o.server.CASecret, "ca-secret", "gpu-webhook-ca", "Secret (in --webhook-namespace) holding the self-signed CA")
	f.StringVar(&o.server.ServiceName, "service-name", registration.DefaultService, "Service in front of the webhook, for certificate names and registration")
	f.StringVar(&o.server.Namespace, "webhook-namespace", ns, "the webhook's own namespace (default $POD_NAMESPACE or gpu-system); never mutated")
	f.StringVar(&o.server.WebhookConfig, "webhook-config-name", registration.DefaultName, "MutatingWebhookConfiguration to register or keep the caBundle of")
	f.BoolVar(&o.server.Register, "register", false, "create or update the MutatingWebhookConfiguration on start")
	f.DurationVar(&o.server.LeafValidity, "self-signed-validity", 30*24*time.Hour, "life of a self-signed serving certificate; renewed in memory after two thirds")
	f.StringVar(&o.server.ConfigFile, "config", "", "device profiles and namespace policy (YAML, see docs/webhook.md); built-in nvidia profile when empty; reloaded when the file changes")
	f.DurationVar(&o.server.ConfigCheckEvery, "config-check-interval", 10*time.Second, "how often --config is checked for changes")
	f.DurationVar(&o.server.ShutdownGrace, "shutdown-grace", 10*time.Second, "time requests in flight get to finish on SIGTERM")
	f.DurationVar(&o.server.DrainDelay, "drain-delay", 3*time.Second, "after SIGTERM, keep answering this long, asking clients to close their connections, before closing them (rollouts without failed admissions)")
	f.IntVar(&o.server.Limits.MaxConcurrent, "max-concurrent-admissions", webhook.DefaultLimits.MaxConcurrent, "admissions decoded at once; more wait up to 2s, then get HTTP 429 (bounds memory: see docs/security.md)")
	f.StringVar(&o.tlsMinVersion, "tls-min-version", webhook.DefaultTLSMinVersion, "lowest TLS version served: VersionTLS12 or VersionTLS13")
	f.StringSliceVar(&o.tlsCipherSuites, "tls-cipher-suites", webhook.DefaultCipherSuites, "TLS 1.2 cipher suites (IANA names); insecure and unknown names are refused")
	o.trust.addFlags(f, []string{defaultPlexWorkload}, " (the gate refuses preemptible pods while one is unhealthy)")
	f.StringVar(&o.server.GateJournal, "journal-name", journal.GateName, "ConfigMap in --webhook-namespace where the admission gate keeps its denials and break-glass admissions for gpuslice history (bounded; every replica writes it); none when empty")
	f.BoolVar(&o.admissionGate, "admission-gate", false, "refuse new pods of preemptible GPU workloads while a protected one is unhealthy or free shares do not cover them (gpuslice.io/break-glass=REASON lets one in); watches the cluster, see docs/webhook.md")
	return cmd
}
