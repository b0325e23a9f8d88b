package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeFlags are kubectl's connection flags (--kubeconfig, --context,
// --cluster, --user, -n, --as, --as-group, --server, --token, ...) from
// client-go's clientcmd, with kubectl's loading rules: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config, else the pod's in-cluster config.
// cli-runtime's genericclioptions offers the same flags but links
// kustomize, and through it Go's plugin package (a bigger binary linked
// with BIND_NOW).
type kubeFlags struct {
	rules     *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
	loaded    clientcmd.ClientConfig
}

func newKubeFlags() *kubeFlags {
	return &kubeFlags{rules: clientcmd.NewDefaultClientConfigLoadingRules()}
}

func (k *kubeFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file (default $KUBECONFIG, else ~/.kube/config, else in-cluster)")
	clientcmd.BindOverrideFlags(&k.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
}

// config is the merged kubeconfig, read once on first use.
func (k *kubeFlags) config() clientcmd.ClientConfig {
	if k.loaded == nil {
		k.loaded = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.rules, &k.overrides)
	}
	return k.loaded
}

// restConfig is the client configuration the flags describe.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	cfg, err := k.config().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client configuration: %w; set --kubeconfig or KUBECONFIG, or run in a pod", err)
	}
	// client-go's default (5 requests/s, bursts of 10) made a status of
	// 10,000 pods, 20 pages and a dozen ConfigMaps, wait about 2 s on the
	// client's own limiter; the API server's priority and fairness is the
	// limit that matters, and kubectl allows as much.
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	return cfg, nil
}

// The client-side rate limit of every gpuslice client.
const (
	clientQPS   = 50
	clientBurst = 100
)

// client returns a clientset from the kubeconfig flags (or in-cluster).
func (k *kubeFlags) client() (kubernetes.Interface, error) { return k.newClient(false) }

// listingClient is client with protobuf on the wire, which the API server
// encodes and the client decodes several times faster than JSON: for the
// commands that list whole clusters of built-in objects.
func (k *kubeFlags) listingClient() (kubernetes.Interface, error) { return k.newClient(true) }

func (k *kubeFlags) newClient(protobuf bool) (kubernetes.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	if protobuf {
		cfg.ContentType = runtime.ContentTypeProtobuf
		cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	return cs, nil
}

// Scopes a command's namespace step resolves for.
const (
	// scopeObject: the command acts on named objects, in -n or else the
	// kubeconfig context's namespace ("default" without one), as kubectl.
	scopeObject = iota
	// scopeList: the command lists; without -n it looks at every
	// namespace ("").
	scopeList
)

// namespace is every command's one namespace step.
func (k *kubeFlags) namespace(scope int) (string, error) {
	if ns := k.overrides.Context.Namespace; ns != "" || scope == scopeList {
		return ns, nil
	}
	ns, _, err := k.config().Namespace()
	if err != nil {
		return "", fmt.Errorf("finding the namespace: %w; pass -n NAMESPACE", err)
	}
	return ns, nil
}
