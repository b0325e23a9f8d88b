// Package registration registers the device-injection webhook with the API
// server: the MutatingWebhookConfiguration (pure, in Build) and the
// Kubernetes I/O that applies it and keeps its caBundle in step with the
// self-signed CA gpuslice bootstraps.
package registration

import (
	"context"
	"fmt"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Defaults of the seed's cluster.
const (
	DefaultName          = "gpu-directory-injector"
	DefaultWebhookName   = "gpu-directory-injector.gpuslice.io"
	DefaultNamespace     = "gpu-system"
	DefaultService       = "gpu-webhook"
	DefaultTimeoutSecond = 5
	// PodSecurityWebhookName receives the annotated pods of namespaces
	// whose Pod Security level forbids hostPath.
	PodSecurityWebhookName = "pod-security.gpu-directory-injector.gpuslice.io"
)

// Where the webhook serves: MutatePath, and HostPathForbiddenPath for the
// namespaces whose Pod Security level refuses hostPath volumes. The API
// server picks between them with the namespaces' labels, so the webhook
// itself needs no permission to read namespaces.
const (
	MutatePath            = "/mutate"
	HostPathForbiddenPath = MutatePath + "/hostpath-forbidden"
)

// Options describe where the API server reaches the webhook.
type Options struct {
	Name string // of the MutatingWebhookConfiguration
	// Either a Service (in-cluster) ...
	ServiceName, ServiceNamespace string
	ServicePort                   int32
	// ... or a URL (the local control plane, out-of-cluster development).
	URL string

	CABundle []byte
	// ExcludedNamespaces are never sent to the webhook, whatever their pods
	// say; kube-system and the webhook's own namespace by default.
	ExcludedNamespaces []string
	TimeoutSeconds     int32
	// AdmissionGate also sends pods that request a GPU resource without
	// gpuslice's annotations, for the gate to judge, and declares the
	// gate's break-glass Events as side effects (skipped on dry runs).
	AdmissionGate bool
}

// Build returns the registration. Only pod creations that carry one of
// gpuslice's annotations are ever sent (matchConditions), outside the
// excluded namespaces (namespaceSelector): with failurePolicy Fail a webhook
// outage then blocks GPU pods, which must not start without their devices,
// and nothing else.
func Build(o Options) *admissionregistrationv1.MutatingWebhookConfiguration {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = DefaultTimeoutSecond
	}
	excluded := o.ExcludedNamespaces
	if len(excluded) == 0 {
		ns := o.ServiceNamespace
		if ns == "" {
			ns = DefaultNamespace
		}
		excluded = []string{"kube-system", ns}
	}
	excluded = sortedUnique(excluded)

	fail := admissionregistrationv1.Fail
	sideEffects := admissionregistrationv1.SideEffectClassNone
	condition := admissionregistrationv1.MatchCondition{Name: "has-gpuslice-annotation", Expression: MatchExpression()}
	if o.AdmissionGate {
		sideEffects = admissionregistrationv1.SideEffectClassNoneOnDryRun
		condition = admissionregistrationv1.MatchCondition{Name: "has-gpuslice-annotation-or-gpu-request", Expression: GatedMatchExpression()}
	}
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	scope := admissionregistrationv1.NamespacedScope
	equivalent := admissionregistrationv1.Equivalent
	webhook := func(name string, hostPathForbidden bool) admissionregistrationv1.MutatingWebhook {
		// Exactly one of the two webhooks matches any namespace: NotIn also
		// matches a namespace without the label.
		podSecurity := metav1.LabelSelectorOpNotIn
		if hostPathForbidden {
			podSecurity = metav1.LabelSelectorOpIn
		}
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			ClientConfig:            o.clientConfig(hostPathForbidden),
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           &fail,
			SideEffects:             &sideEffects,
			TimeoutSeconds:          &o.TimeoutSeconds,
			ReinvocationPolicy:      &reinvoke,
			MatchPolicy:             &equivalent,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
				{Key: workload.LabelPodSecurityEnforce, Operator: podSecurity, Values: workload.PodSecurityLevelsForbiddingHostPath},
			}},
			MatchConditions: []admissionregistrationv1.MatchCondition{condition},
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{
			"app.kubernetes.io/name": "gpuslice", "app.kubernetes.io/component": "webhook",
		}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			webhook(DefaultWebhookName, false),
			webhook(PodSecurityWebhookName, true),
		},
	}
}

// clientConfig is where the API server sends a review: the Service or the
// URL, at HostPathForbiddenPath for namespaces that forbid hostPath.
func (o Options) clientConfig(hostPathForbidden bool) admissionregistrationv1.WebhookClientConfig {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.URL != "" {
		url := o.URL
		if hostPathForbidden {
			// The URL names MutatePath; the other route sits beneath it.
			url = strings.TrimSuffix(url, "/") + strings.TrimPrefix(HostPathForbiddenPath, MutatePath)
		}
		cc.URL = &url
		return cc
	}
	path := MutatePath
	if hostPathForbidden {
		path = HostPathForbiddenPath
	}
	port := o.ServicePort
	if port == 0 {
		port = 443
	}
	cc.Service = &admissionregistrationv1.ServiceReference{Name: o.ServiceName, Namespace: o.ServiceNamespace, Path: &path, Port: &port}
	return cc
}

// MatchExpression is the CEL condition that selects annotated pods.
func MatchExpression() string {
	keys := []string{workload.AnnotationProfiles, workload.AnnotationShares}
	terms := make([]string, len(keys))
	for i, k := range keys {
		terms[i] = fmt.Sprintf("%q in object.metadata.annotations", k)
	}
	return "has(object.metadata.annotations) && (" + strings.Join(terms, " || ") + ")"
}

// GatedMatchExpression adds, for the admission gate, pods whose containers
// or init containers request or limit an "nvidia.com/" resource (the
// ledger's GPU resources) without carrying an annotation.
func GatedMatchExpression() string {
	requests := func(list string) string {
		return list + ".exists(c, has(c.resources) && (" +
			"(has(c.resources.requests) && c.resources.requests.exists(r, r.startsWith(\"nvidia.com/\"))) || " +
			"(has(c.resources.limits) && c.resources.limits.exists(r, r.startsWith(\"nvidia.com/\")))))"
	}
	return "(" + MatchExpression() + ") || " + requests("object.spec.containers") +
		" || (has(object.spec.initContainers) && " + requests("object.spec.initContainers") + ")"
}

// Apply creates the registration or replaces an existing one's webhooks,
// keeping a caBundle already there when the new one has none (cert-manager's
// CA injector may own it).
func Apply(ctx context.Context, cs kubernetes.Interface, want *admissionregistrationv1.MutatingWebhookConfiguration) error {
	api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		next := want.DeepCopy()
		next.ResourceVersion = cur.ResourceVersion
		next.Annotations = cur.Annotations
		for i := range next.Webhooks {
			if len(next.Webhooks[i].ClientConfig.CABundle) == 0 && i < len(cur.Webhooks) {
				next.Webhooks[i].ClientConfig.CABundle = cur.Webhooks[i].ClientConfig.CABundle
			}
		}
		_, err = api.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("applying MutatingWebhookConfiguration %s: %w", want.Name, err)
	}
	return nil
}

// EnsureCABundle makes every webhook of the named registration trust ca,
// keeping the CAs it already trusts so that replicas still serving a leaf
// of an older CA are not cut off during a rotation.
func EnsureCABundle(ctx context.Context, cs kubernetes.Interface, name string, ca []byte) error {
	api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for i := range cur.Webhooks {
			b := certs.AppendBundle(cur.Webhooks[i].ClientConfig.CABundle, ca)
			if string(b) != string(cur.Webhooks[i].ClientConfig.CABundle) {
				cur.Webhooks[i].ClientConfig.CABundle, changed = b, true
			}
		}
		if !changed {
			return nil
		}
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("updating caBundle of MutatingWebhookConfiguration %s: %w; grant get and update on mutatingwebhookconfigurations to the webhook's ServiceAccount", name, err)
	}
	if err != nil {
		return fmt.Errorf("updating caBundle of MutatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}

func sortedUnique(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
