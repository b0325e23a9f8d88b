package main

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/kubeconfig"
)

// kubeFlags are kubectl's connection flags (internal/kubeconfig) and the
// clientset gpuslice's commands use.
type kubeFlags struct {
	*kubeconfig.Flags
}

func newKubeFlags() *kubeFlags { return &kubeFlags{kubeconfig.NewFlags()} }

// client returns a clientset from the kubeconfig flags (or in-cluster).
func (k *kubeFlags) client() (kubernetes.Interface, error) { return k.newClient(false) }

// listingClient is client with protobuf on the wire, which the API server
// encodes and the client decodes several times faster than JSON: for the
// commands that list whole clusters of built-in objects.
func (k *kubeFlags) listingClient() (kubernetes.Interface, error) { return k.newClient(true) }

func (k *kubeFlags) newClient(protobuf bool) (kubernetes.Interface, error) {
	cfg, err := k.RestConfig()
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
	if ns := k.ExplicitNamespace(); ns != "" || scope == scopeList {
		return ns, nil
	}
	ns, err := k.ContextNamespace()
	if err != nil {
		return "", fmt.Errorf("finding the namespace: %w; pass -n NAMESPACE", err)
	}
	return ns, nil
}
