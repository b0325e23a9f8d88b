package agent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// NodePods lists and watches the pods bound to node (field selector
// spec.nodeName), in protobuf, through a REST client that knows core/v1
// and nothing else. The typed clientset would do the same, but linking it
// registers every API group Kubernetes has: about 12 MB of the agent's
// binary, most of it mapped into the resident memory of every agent
// (docs/benchmarks.md, "Node agent").
func NodePods(cfg *rest.Config, node string) (cache.ListerWatcher, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("pods client: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = "gpuslice-agent"
	}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("pods client for %s: %w", cfg.Host, err)
	}
	onNode := fields.OneTermEqualSelector("spec.nodeName", node).String()
	request := func(o metav1.ListOptions) *rest.Request {
		o.FieldSelector = onNode
		return client.Get().Resource("pods").VersionedParams(&o, metav1.ParameterCodec)
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			pods := &corev1.PodList{}
			return pods, request(o).Do(ctx).Into(pods)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.Watch = true
			return request(o).Watch(ctx)
		},
	}, nil
}
