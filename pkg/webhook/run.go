package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/filestamp"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

// RunOptions configure `gpuslice webhook`.
type RunOptions struct {
	ListenAddress  string
	MetricsAddress string // plain HTTP; empty disables it

	// Certificates from files (cert-manager, a mounted Secret) ...
	CertFile, KeyFile string
	// ... or issued from a CA bootstrapped in a Secret.
	SelfSigned    bool
	CASecret      string
	ServiceName   string
	Namespace     string // the webhook's own namespace
	WebhookConfig string // MutatingWebhookConfiguration whose caBundle to keep
	Register      bool   // create or update the registration on start
	LeafValidity  time.Duration
	ConfigFile    string
	// ConfigCheckEvery is how often ConfigFile is checked for changes.
	ConfigCheckEvery time.Duration
	ShutdownGrace    time.Duration
	// DrainDelay: see Server.DrainDelay.
	DrainDelay time.Duration
	// Limits bound admissions' cost; zero fields are DefaultLimits'.
	Limits Limits
	// TLS is the served versions and suites; zero means ParseTLSOptions'
	// defaults.
	TLS TLSOptions
	// Gate, when set, is the admission gate (--admission-gate): Run starts
	// it, and the registration also sends unannotated GPU pods.
	Gate Gate
	// GateJournal is the ConfigMap, in Namespace, where the gate's
	// decisions are kept for gpuslice history (package journal); none
	// when empty. Needs Client.
	GateJournal string
	// GateJournalEvery is how often at most it is written;
	// DefaultJournalEvery when 0.
	GateJournalEvery time.Duration
	Client           kubernetes.Interface // needed with SelfSigned, Register or GateJournal
	Log              *slog.Logger
}

// check refuses options Run cannot serve with; the command says the same
// in terms of its flags before it gets here.
func (o RunOptions) check() error {
	switch {
	case o.SelfSigned && (o.CertFile != "" || o.KeyFile != ""):
		return errors.New("webhook: SelfSigned and CertFile/KeyFile exclude each other")
	case !o.SelfSigned && (o.CertFile == "" || o.KeyFile == ""):
		return errors.New("webhook: no serving certificate: CertFile and KeyFile, or SelfSigned")
	case (o.SelfSigned || o.Register || o.Gate != nil && o.GateJournal != "") && o.Client == nil:
		return errors.New("webhook: SelfSigned, Register and GateJournal need Client")
	case o.Limits.MaxConcurrent < 0:
		return fmt.Errorf("webhook: Limits.MaxConcurrent %d is negative", o.Limits.MaxConcurrent)
	}
	return nil
}

// Run serves the webhook until ctx ends.
func Run(ctx context.Context, o RunOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.TLS.MinVersion == 0 {
		o.TLS, _ = ParseTLSOptions("", nil)
	}
	// Stamp before loading, so a change made while loading is not missed.
	configStamp, _ := filestamp.Of(o.ConfigFile)
	cfg, err := loadConfig(o.ConfigFile, o.Namespace)
	if err != nil {
		return err
	}
	metrics := NewMetrics()
	source, caPEM, err := certificateSource(ctx, o, metrics)
	if err != nil {
		return err
	}
	if o.Register {
		mwc := registration.Build(registration.Options{
			Name: o.WebhookConfig, ServiceName: o.ServiceName, ServiceNamespace: o.Namespace,
			CABundle: caPEM, ExcludedNamespaces: cfg.ExcludedNamespaces, AdmissionGate: o.Gate != nil,
		})
		if err := registration.Apply(ctx, o.Client, mwc); err != nil {
			return err
		}
		o.Log.Info("registered webhook", "mutatingWebhookConfiguration", mwc.Name, "service", o.Namespace+"/"+o.ServiceName)
	} else if o.SelfSigned {
		if err := keepCABundle(ctx, o, caPEM); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return fmt.Errorf("listening on %s: %w; choose another --listen-address", o.ListenAddress, err)
	}
	var metricsLn net.Listener
	if o.MetricsAddress != "" {
		if metricsLn, err = net.Listen("tcp", o.MetricsAddress); err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s: %w; choose another --metrics-address", o.MetricsAddress, err)
		}
	}
	handler := NewHandler(cfg, metrics, o.Log)
	handler.SetLimits(o.Limits)
	if o.Gate != nil && o.GateJournal != "" {
		handler.decisions = newGateJournal(o.Client, store.Ref{Namespace: o.Namespace, Name: o.GateJournal}, o.GateJournalEvery, metrics, o.Log)
		// Stopped after the server: what it decides while draining is
		// written too.
		defer handler.decisions.start(ctx)()
	}
	if o.Gate != nil {
		startGate(ctx, handler, o.Gate, o.Log)
	}
	if o.ConfigFile != "" {
		every := o.ConfigCheckEvery
		if every == 0 {
			every = 10 * time.Second
		}
		w := &ConfigWatcher{Path: o.ConfigFile, Namespace: o.Namespace, Every: every, Handler: handler, Metrics: metrics, Log: o.Log}
		go w.Run(ctx, configStamp)
	}
	srv := &Server{Handler: handler, Metrics: metrics, Certs: source, Log: o.Log, ShutdownGrace: o.ShutdownGrace, DrainDelay: o.DrainDelay, TLS: o.TLS}
	return srv.Serve(ctx, ln, metricsLn)
}

// startGate turns the gate on and lists the cluster in the background:
// the server serves /healthz meanwhile, while /readyz fails and the gate
// refuses what it is asked.
func startGate(ctx context.Context, h *Handler, g Gate, log *slog.Logger) {
	h.SetGate(g)
	go func() {
		if err := g.Start(ctx); err != nil {
			if ctx.Err() == nil {
				log.Error("admission gate not started", "error", err.Error())
			}
			return
		}
		log.Info("admission gate ready: refusing new preemptible GPU pods while a protected workload is unhealthy or shares are short")
	}()
}

func loadConfig(path, namespace string) (*inject.Config, error) {
	if path == "" {
		return inject.DefaultConfig(namespace), nil
	}
	return inject.LoadConfig(path, namespace)
}

// certificateSource picks files or the self-signed CA; it returns the CA
// PEM to trust when gpuslice issues its own certificates.
func certificateSource(ctx context.Context, o RunOptions, m *Metrics) (certs.Source, []byte, error) {
	onReload := func(notAfter time.Time, err error) {
		m.CertificateLoaded(notAfter, err)
		if err != nil {
			o.Log.Error("serving certificate not loaded; still serving the previous one", "error", err.Error())
		} else {
			o.Log.Info("serving certificate loaded", "notAfter", notAfter.Format(time.RFC3339))
		}
	}
	switch {
	case o.SelfSigned:
		ca, err := registration.BootstrapCA(ctx, o.Client, o.Namespace, o.CASecret)
		if err != nil {
			return nil, nil, err
		}
		validity := o.LeafValidity
		if validity == 0 {
			validity = 30 * 24 * time.Hour
		}
		src, err := certs.NewIssuingSource(ca, certs.LeafOptions{
			CommonName: o.ServiceName + "." + o.Namespace + ".svc",
			DNSNames:   registration.ServiceDNSNames(o.ServiceName, o.Namespace),
			ValidFor:   validity,
		}, onReload)
		return src, ca.CertPEM, err
	default:
		src, err := certs.NewFileSource(o.CertFile, o.KeyFile, onReload)
		return src, nil, err
	}
}

// keepCABundle writes the CA into the registration's caBundle. A
// registration that does not exist yet (Helm creates it after the
// Deployment) is retried in the background while the server starts, instead
// of failing the process into a restart loop; any other error stops the
// start, since it will not heal by itself.
func keepCABundle(ctx context.Context, o RunOptions, caPEM []byte) error {
	err := registration.EnsureCABundle(ctx, o.Client, o.WebhookConfig, caPEM)
	if !apierrors.IsNotFound(err) {
		return err
	}
	o.Log.Warn("registration not found yet; will write the caBundle when it appears",
		"mutatingWebhookConfiguration", o.WebhookConfig)
	go func() {
		_ = wait.PollUntilContextCancel(ctx, 2*time.Second, false, func(ctx context.Context) (bool, error) {
			err := registration.EnsureCABundle(ctx, o.Client, o.WebhookConfig, caPEM)
			switch {
			case err == nil:
				o.Log.Info("caBundle written", "mutatingWebhookConfiguration", o.WebhookConfig)
				return true, nil
			case apierrors.IsNotFound(err):
				return false, nil
			default:
				o.Log.Error("writing caBundle", "error", err.Error())
				return false, nil
			}
		})
	}()
	return nil
}
