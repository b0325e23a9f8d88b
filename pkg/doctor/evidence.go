package doctor

import (
	"crypto/x509"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Workload kinds doctor names, as the ledger names them.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindPod         = "Pod"
	KindCronJob     = workload.KindCronJob
)

// Evidence is everything the checks look at, gathered beforehand.
type Evidence struct {
	// Target is the KIND/NAME asked about, "" for every GPU workload.
	Target string
	Now    time.Time
	// Nodes are all nodes, GPU or not: placement must know both.
	Nodes []corev1.Node
	// Ledger is the share and VRAM ledger of the whole cluster.
	Ledger *ledger.Report
	// ConfigMaps the GPU pods take environment from.
	ConfigMaps     []corev1.ConfigMap
	RuntimeClasses RuntimeClasses
	// Injector has the webhook's device profiles; nil means the built-in
	// ones (inject.DefaultConfig).
	Injector *inject.Config
	// Webhook is nil when the webhook was not examined (a target that
	// does not use it).
	Webhook *WebhookEvidence
	// DevicePlugin is nil when it was not examined (a target was named).
	DevicePlugin *DevicePluginEvidence
	Workloads    []WorkloadEvidence
}

// RuntimeClasses are the cluster's RuntimeClasses by name, with their
// handler; Err says why they could not be listed.
type RuntimeClasses struct {
	Handlers map[string]string
	Err      string
}

// WorkloadEvidence is one workload: its controller (none for a bare pod)
// and its pods.
type WorkloadEvidence struct {
	Kind      string
	Namespace string
	Name      string
	// Annotations are the controller's own, not its template's: a GPU
	// annotation put there never reaches a pod.
	Annotations map[string]string
	// Template is the pod template; nil for a bare pod.
	Template *corev1.PodTemplateSpec
	// Desired is how many pods the controller wants; nil when unknown.
	Desired *int32
	// CreateFailures say why the controller could not create pods: its
	// ReplicaFailure conditions and FailedCreate events, newest first.
	CreateFailures []string
	Pods           []PodEvidence
}

// PodEvidence is one pod with what was read about it.
type PodEvidence struct {
	Pod *corev1.Pod
	// Events about the pod, newest first.
	Events []Event
	// Logs are the tails read from its containers that have run.
	Logs []ContainerLog
}

// Event is a core/v1 or events.k8s.io/v1 event, flattened.
type Event struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count"`
	Last    time.Time `json:"last"`
}

// ContainerLog is the tail of one container's log; Previous marks the run
// before the last restart (where a crash's cause is).
type ContainerLog struct {
	Container string
	Previous  bool
	Lines     []string
	// Err says why the log could not be read.
	Err string
}

// WebhookEvidence is what was found about the device-injection webhook.
type WebhookEvidence struct {
	// ConfigName is the MutatingWebhookConfiguration looked for; Config is
	// nil when ConfigErr says why it was not read (not found, forbidden).
	ConfigName string
	Config     *admissionregistrationv1.MutatingWebhookConfiguration
	ConfigErr  string
	// Used says whether any workload examined goes through the webhook:
	// without one, a cluster that does not run the webhook is fine.
	Used bool
	// Namespace and Selector are where the webhook's Deployment and pods
	// were looked for.
	Namespace   string
	Selector    string
	Deployments []appsv1.Deployment
	Pods        []corev1.Pod
	WorkloadErr string
	// Service is the clientConfig's Service (nil for a URL, or when
	// ServiceErr says why it is missing).
	Service        *corev1.Service
	ServiceErr     string
	EndpointSlices []discoveryv1.EndpointSlice
	// Handshake is nil when there was no address to dial.
	Handshake *Handshake
	DryRun    DryRun
}

// URL returns the clientConfig's URL, or "" when it names a Service.
func (w *WebhookEvidence) URL() string {
	if hook := w.hook(); hook != nil && hook.ClientConfig.URL != nil {
		return *hook.ClientConfig.URL
	}
	return ""
}

// ServiceRef returns the clientConfig's Service, or nil.
func (w *WebhookEvidence) ServiceRef() *admissionregistrationv1.ServiceReference {
	if hook := w.hook(); hook != nil {
		return hook.ClientConfig.Service
	}
	return nil
}

// hook is the configuration's first webhook: gpuslice registers one.
func (w *WebhookEvidence) hook() *admissionregistrationv1.MutatingWebhook {
	if w.Config == nil || len(w.Config.Webhooks) == 0 {
		return nil
	}
	return &w.Config.Webhooks[0]
}

// Handshake is a TLS handshake with the webhook made from where doctor
// runs, accepting any certificate so that it can be judged afterwards.
type Handshake struct {
	// Address is the host:port dialled; ServerName the name the API server
	// verifies the certificate against.
	Address    string
	ServerName string
	// Err is empty on success; Unreachable marks a failure before TLS
	// (no route, refused, timeout).
	Err         string
	Unreachable bool
	// Chain is what the webhook presented, leaf first.
	Chain []*x509.Certificate
}

// DryRun is the admission of a probe pod through the API server with
// dryRun: All, the path every GPU pod takes.
type DryRun struct {
	Namespace string
	// Profile is the device profile the probe's annotation asked for.
	Profile inject.Profile
	// Pod is what the API server answered; nil on error.
	Pod *corev1.Pod
	// Warnings are what the webhook said about the probe.
	Warnings []string
	Err      string
}

// profiles are the webhook's device profiles as doctor knows them.
func (ev *Evidence) profiles() []inject.Profile {
	if ev.Injector != nil {
		return ev.Injector.Profiles
	}
	return inject.DefaultConfig("").Profiles
}

// PodAnnotations are the annotations its pods get: the template's, or the
// bare pod's own.
func (w *WorkloadEvidence) PodAnnotations() map[string]string {
	if w.Template != nil {
		return w.Template.Annotations
	}
	if len(w.Pods) > 0 {
		return w.Pods[0].Pod.Annotations
	}
	return nil
}

// templatePod is a pod as the controller would create it, before
// admission; for a bare pod, the pod itself.
func (w *WorkloadEvidence) templatePod() *corev1.Pod {
	if w.Template == nil {
		if len(w.Pods) > 0 {
			return w.Pods[0].Pod
		}
		return &corev1.Pod{}
	}
	return &corev1.Pod{ObjectMeta: *w.Template.ObjectMeta.DeepCopy(), Spec: *w.Template.Spec.DeepCopy()}
}

// livePods are the pods that hold or wait for resources: not finished.
func (w *WorkloadEvidence) livePods() []*corev1.Pod {
	var out []*corev1.Pod
	for i := range w.Pods {
		p := w.Pods[i].Pod
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// workloadNodes are the nodes the workload's pods are bound to, or, when
// none is, the GPU nodes its placement allows.
func workloadNodes(ev *Evidence, w *WorkloadEvidence) []string {
	var bound []string
	for _, p := range w.livePods() {
		if p.Spec.NodeName != "" && !slices.Contains(bound, p.Spec.NodeName) {
			bound = append(bound, p.Spec.NodeName)
		}
	}
	if len(bound) > 0 {
		return bound
	}
	return candidateNodes(w.templatePod(), ev.Nodes, ev.Ledger)
}

// nodeReport returns the ledger's entry for a GPU node.
func nodeReport(r *ledger.Report, name string) *ledger.NodeReport {
	if r == nil {
		return nil
	}
	for i := range r.Nodes {
		if r.Nodes[i].Name == name {
			return &r.Nodes[i]
		}
	}
	return nil
}

// podNodeReport is the ledger entry of the node a pod runs on, else of the
// first node the workload may run on: whose memory use the OOM advice
// points at.
func (ev *Evidence) podNodeReport(node string, w *WorkloadEvidence) *ledger.NodeReport {
	if n := nodeReport(ev.Ledger, node); n != nil {
		return n
	}
	for _, name := range workloadNodes(ev, w) {
		if n := nodeReport(ev.Ledger, name); n != nil {
			return n
		}
	}
	return nil
}
