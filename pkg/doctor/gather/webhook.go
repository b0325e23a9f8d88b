package gather

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// ProbeImage is the dry-run pod's image; it is never pulled.
const ProbeImage = "registry.k8s.io/pause:3.10"

// collectWebhook reads the registration, the webhook's workload and
// Service, shakes hands with it, and admits a probe pod with dryRun All.
func collectWebhook(ctx context.Context, cs kubernetes.Interface, o *Options, probeNS string) *doctor.WebhookEvidence {
	w := &doctor.WebhookEvidence{ConfigName: o.WebhookConfig, Namespace: o.WebhookNamespace}
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, o.WebhookConfig, metav1.GetOptions{})
	if err != nil {
		w.ConfigErr = err.Error()
	} else {
		w.Config = mwc
	}
	ref := w.ServiceRef()
	if ref != nil {
		w.Namespace = ref.Namespace
		svc, err := cs.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			w.ServiceErr = err.Error()
		} else {
			w.Service = svc
		}
		list, err := cs.DiscoveryV1().EndpointSlices(ref.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + ref.Name,
		})
		if err == nil {
			w.EndpointSlices = list.Items
		} else if w.ServiceErr == "" {
			w.ServiceErr = "listing its EndpointSlices: " + err.Error()
		}
	}
	webhookWorkload(ctx, cs, o, w)
	w.Handshake = handshake(ctx, w, o)
	w.DryRun = dryRun(ctx, cs, probeNS, probeProfile(o.Injector))
	return w
}

// webhookWorkload finds the webhook's pods by the flag, the Service's
// selector, or gpuslice's label and then the seed's, and the Deployments
// whose template makes them.
func webhookWorkload(ctx context.Context, cs kubernetes.Interface, o *Options, w *doctor.WebhookEvidence) {
	selectors := []string{DefaultWebhookSelector, LegacyWebhookSelector}
	switch {
	case o.WebhookSelector != "":
		selectors = []string{o.WebhookSelector}
	case w.Service != nil && len(w.Service.Spec.Selector) > 0:
		selectors = []string{labels.SelectorFromSet(w.Service.Spec.Selector).String()}
	}
	deps, err := cs.AppsV1().Deployments(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		w.WorkloadErr = err.Error()
		return
	}
	for _, s := range selectors {
		sel, err := labels.Parse(s)
		if err != nil {
			w.WorkloadErr = fmt.Sprintf("selector %q: %v", s, err)
			return
		}
		pods, err := cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s})
		if err != nil {
			w.WorkloadErr = err.Error()
			return
		}
		w.Pods = pods.Items
		for _, d := range deps.Items {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				w.Deployments = append(w.Deployments, d)
			}
		}
		if len(w.Pods) > 0 || len(w.Deployments) > 0 {
			w.Selector = s
			return
		}
	}
	w.Selector = strings.Join(selectors, " or ")
}

// handshake dials the webhook where the API server would: the URL, or a
// ready endpoint of the Service at the port the Service maps to. It
// accepts any certificate: judging it against the caBundle is a check of
// its own.
func handshake(ctx context.Context, w *doctor.WebhookEvidence, o *Options) *doctor.Handshake {
	address, serverName := dialTarget(w)
	if address == "" {
		return nil
	}
	h := &doctor.Handshake{Address: address, ServerName: serverName}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	conn, err := o.Dial(ctx, "tcp", address)
	if err != nil {
		h.Err, h.Unreachable = err.Error(), true
		return h
	}
	defer conn.Close()
	// Verification is done afterwards, against the caBundle rather than
	// this machine's roots.
	tc := tls.Client(conn, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err := tc.HandshakeContext(ctx); err != nil {
		h.Err = err.Error()
		return h
	}
	h.Chain = tc.ConnectionState().PeerCertificates
	return h
}

// dialTarget returns host:port and the name the API server verifies.
func dialTarget(w *doctor.WebhookEvidence) (address, serverName string) {
	if raw := w.URL(); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return "", ""
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		return net.JoinHostPort(u.Hostname(), port), u.Hostname()
	}
	ref := w.ServiceRef()
	if ref == nil || w.Service == nil {
		return "", ""
	}
	serverName = ref.Name + "." + ref.Namespace + ".svc"
	var portName string
	want := int32(443)
	if ref.Port != nil {
		want = *ref.Port
	}
	for _, p := range w.Service.Spec.Ports {
		if p.Port == want {
			portName = p.Name
		}
	}
	for _, s := range w.EndpointSlices {
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil && portName == "" || p.Name != nil && *p.Name == portName) {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if (e.Conditions.Ready == nil || *e.Conditions.Ready) && len(e.Addresses) > 0 {
				return net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port))), serverName
			}
		}
	}
	return "", serverName
}

// probeProfile is the profile the dry run asks for: the built-in nvidia
// one, or the first the injector config has.
func probeProfile(cfg *inject.Config) inject.Profile {
	if cfg == nil {
		cfg = inject.DefaultConfig("")
	}
	for _, p := range cfg.Profiles {
		if p.Name == inject.BuiltinProfileName {
			return p
		}
	}
	return cfg.Profiles[0]
}

// dryRun creates a minimal annotated pod with dryRun All: admission runs
// in full (the webhook, failurePolicy, PodSecurity, quotas) and nothing is
// stored.
func dryRun(ctx context.Context, cs kubernetes.Interface, namespace string, profile inject.Profile) doctor.DryRun {
	d := doctor.DryRun{Namespace: namespace, Profile: profile}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "gpuslice-doctor-probe-",
			Namespace:    namespace,
			Labels:       map[string]string{"app.kubernetes.io/name": "gpuslice-doctor"},
			Annotations:  map[string]string{workload.AnnotationProfiles: profile.Name},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: ProbeImage}}},
	}
	// Through the REST client to keep the webhook's warnings ("mounted
	// /dev/nvidia0 ...") as evidence rather than printed on stderr.
	got := &corev1.Pod{}
	err := cs.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").
		VersionedParams(&metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}, scheme.ParameterCodec).
		Body(probe).
		WarningHandler(warningFunc(func(text string) { d.Warnings = append(d.Warnings, text) })).
		Do(ctx).Into(got)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	d.Pod = got
	return d
}

// warningFunc adapts a function to rest.WarningHandler.
type warningFunc func(text string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, text string) { f(text) }
