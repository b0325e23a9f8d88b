// Package kubeconfig is kubectl's way of finding the cluster, from
// client-go's clientcmd: --kubeconfig, else $KUBECONFIG, else
// ~/.kube/config, else the pod's in-cluster configuration, with kubectl's
// override flags (--context, --cluster, --user, -n, --as, --server,
// --token, ...). It builds a rest.Config only: each binary makes the
// clients it needs (gpuslice a clientset, gpuslice-agent a pods-only
// client), so that linking this package links no API group.
//
// cli-runtime's genericclioptions offers the same flags but links
// kustomize, and through it Go's plugin package (a bigger binary linked
// with BIND_NOW).
package kubeconfig

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The client-side rate limit of every gpuslice client. client-go's
// default (5 requests/s, bursts of 10) made a status of 10,000 pods, 20
// pages and a dozen ConfigMaps, wait about 2 s on the client's own
// limiter; the API server's priority and fairness is the limit that
// matters, and kubectl allows as much.
const (
	ClientQPS   = 50
	ClientBurst = 100
)

// Flags load the client configuration.
type Flags struct {
	rules     *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
	loaded    clientcmd.ClientConfig
}

// NewFlags are the flags with kubectl's loading rules.
func NewFlags() *Flags {
	return &Flags{rules: clientcmd.NewDefaultClientConfigLoadingRules()}
}

// AddKubeconfigFlag registers --kubeconfig alone, for a program that
// normally runs in a pod (gpuslice-agent).
func (f *Flags) AddKubeconfigFlag(fs *pflag.FlagSet) {
	fs.StringVar(&f.rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file (default $KUBECONFIG, else ~/.kube/config, else in-cluster)")
}

// AddFlags registers --kubeconfig and kubectl's override flags.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	f.AddKubeconfigFlag(fs)
	clientcmd.BindOverrideFlags(&f.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
}

// config is the merged kubeconfig, read once on first use.
func (f *Flags) config() clientcmd.ClientConfig {
	if f.loaded == nil {
		f.loaded = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(f.rules, &f.overrides)
	}
	return f.loaded
}

// RestConfig is the client configuration the flags describe, with
// gpuslice's rate limit.
func (f *Flags) RestConfig() (*rest.Config, error) {
	cfg, err := f.config().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client configuration: %w; set --kubeconfig or KUBECONFIG, or run in a pod", err)
	}
	cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	return cfg, nil
}

// ExplicitNamespace is -n as given, empty without it.
func (f *Flags) ExplicitNamespace() string { return f.overrides.Context.Namespace }

// ContextNamespace is the kubeconfig context's namespace ("default"
// without one, the pod's own in a cluster).
func (f *Flags) ContextNamespace() (string, error) {
	ns, _, err := f.config().Namespace()
	return ns, err
}
