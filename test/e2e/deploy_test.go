package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	helmchart "helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/image"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// fieldManager owns what the tests apply.
const fieldManager = "gpuslice-test"

// chartCases override every value in values.yaml at least once
// (TestChartCasesCoverEveryValue checks it), each case in a coherent set.
var chartCases = []struct {
	name, namespace, release, values string
}{
	{name: "defaults"},
	{name: "other namespace and release", namespace: "gpuslice", release: "gs"},
	{name: "image and names", values: `
image: {repository: registry.homelab.lan/gpuslice, tag: dev, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
nameOverride: gs
logFormat: text
logLevel: debug`},
	{name: "full name", values: `fullnameOverride: homelab-gpu`},
	{name: "webhook tuned", values: `
webhook:
  replicas: 3
  configurationName: gpu-injector
  failurePolicy: Ignore
  timeoutSeconds: 10
  service: {name: gpuslice-webhook, port: 8443}
  port: 9443
  metrics: {enabled: false, port: 9091}
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
  podDisruptionBudget: {minAvailable: 2}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}]
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
  priorityClassName: gpuslice-webhook
  preStopSeconds: 5
  podAnnotations: {backup.velero.io/backup-volumes: ""}
  podLabels: {team: homelab}
  extraArgs: [--shutdown-grace=20s]`},
	{name: "one webhook replica", values: `webhook: {replicas: 1}`},
	{name: "admission gate", values: `webhook: {admissionGate: true}`},
	{name: "admission gate with cert-manager", values: `{webhook: {admissionGate: true}, certificates: {mode: cert-manager}}`},
	{name: "no disruption budget", values: `webhook: {podDisruptionBudget: {enabled: false}}`},
	{name: "webhook config", values: `
webhook:
  config:
    excludedNamespaces: [kube-system, gpu-system, backup]
    profiles:
      - name: intel-qsv
        devices: [{name: dri, hostPath: /dev/dri, type: Directory}]
        namespaces: [media]
    hybrid: {resourceName: nvidia.com/gpu.shared, runtimeClassName: nvidia, env: {NVIDIA_DRIVER_CAPABILITIES: "compute,utility"}}
  profileNamespaces: {nvidia: [media, ai, ai-dev]}`},
	{name: "self-signed tuned", values: `certificates: {selfSigned: {caSecretName: gpuslice-ca, validity: 240h}}`},
	{name: "cert-manager", values: `certificates: {mode: cert-manager, certManager: {duration: 720h, renewBefore: 240h}}`},
	{name: "cert-manager issuer", values: `
certificates:
  mode: cert-manager
  certManager: {issuerRef: {name: homelab-ca, kind: ClusterIssuer, group: cert-manager.io}}`},
	{name: "agent tuned", values: `
agent:
  hostPID: false
  runAsUser: 10001
  port: 9500
  runtimeClassName: ""
  nvmlLibrary: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
  # null removes a default key; Helm merges maps.
  nodeSelector: {nvidia.com/gpu.present: null, kubernetes.io/hostname: homelabai}
  tolerations: []
  resources: {requests: {cpu: 20m, memory: 64Mi}, limits: {memory: 256Mi}}
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]}}}
  priorityClassName: system-node-critical
  podAnnotations: {prometheus.io/scrape: "true"}
  podLabels: {team: homelab}
  extraArgs: [--nvml-retry-max=1m]`},
	{name: "no agent", values: `agent: {enabled: false}`},
	{name: "runtime class", values: `runtimeClass: {create: true, name: nvidia-legacy, handler: nvidia-legacy}`},
	{name: "device plugin config", values: `
devicePlugin:
  config: {create: true, name: nvidia-sharing, namespace: kube-system, replicas: 4, rename: false, failRequestsGreaterThanOne: true}`},
	{name: "monitoring", values: `
serviceMonitor: {enabled: true, interval: 15s, labels: {release: kube-prometheus-stack}}
prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}, certificateExpiryDays: 14, gpuMemoryFreeBelowMiB: 1536, preemptionsPerHour: 10}
grafana: {dashboard: {enabled: true, namespace: monitoring, labels: {grafana_dashboard: "1", folder: gpu}}}
arbiter: {enabled: true}`},
	{name: "arbiter", values: `arbiter: {enabled: true}`},
	{name: "arbiter tuned", namespace: "gpuslice", release: "gs", values: `
arbiter:
  enabled: true
  replicas: 3
  port: 9502
  interval: 2s
  minFreeMemory: 1536Mi
  memoryMargin: 512Mi
  holdDown: 10m
  unhealthyGrace: 1m
  timeZone: Europe/Berlin
  dryRun: true
  dcgmExporters: [homelabai=http://10.0.0.5:9400/metrics, http://dcgm-exporter.gpu-operator.svc:9400/metrics]
  prometheusUrl: http://prometheus-operated.monitoring.svc:9090
  nodeLabel: Hostname
  agents: true
  workloadNamespaces: {ai: {}, ai-dev: {configMaps: [vllm-config]}}
  protected: [home/deployment/jellyfin]
  trustedNamespaces: [media]
  plex: {url: http://plex.media.svc:32400, workload: media/statefulset/plex, tokenSecret: {name: plex-token, key: PLEX_TOKEN}}
  resources: {requests: {cpu: 20m, memory: 96Mi}, limits: {memory: 512Mi}}
  podDisruptionBudget: {minAvailable: 2}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: nvidia.com/gpu.present, operator: DoesNotExist}]}]
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
  priorityClassName: system-cluster-critical
  podAnnotations: {backup.velero.io/backup-volumes: ""}
  podLabels: {team: homelab}
  extraArgs: [--signal-timeout=5s]`},
	{name: "arbiter without disruption budget", values: `arbiter: {enabled: true, podDisruptionBudget: {enabled: false}}`},
	{name: "network policies", values: `
networkPolicy: {enabled: true, metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}
arbiter: {enabled: true}`},
	{name: "agent in its own namespace", values: `{agent: {namespace: gpu-agents}, arbiter: {enabled: true, agents: true}, serviceMonitor: {enabled: true}}`},
}

// Namespaces the cases install into, besides the release's.
var chartCaseNamespaces = []string{"gpu-system", "gpuslice", "monitoring", "ai", "ai-dev", "gpu-agents"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := chart.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestChartCasesCoverEveryValue(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), chart.Dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := chart.ParseValues(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	var overridden []string
	for _, c := range chartCases {
		v, err := chart.ParseValues(c.values)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		overridden = append(overridden, chart.LeafPaths(v)...)
	}
	for _, leaf := range chart.LeafPaths(defaults) {
		// An override of a map covers its defaults, and the reverse.
		if !slices.ContainsFunc(overridden, func(o string) bool {
			return o == leaf || strings.HasPrefix(leaf, o+".") || strings.HasPrefix(o, leaf+".")
		}) {
			t.Errorf("no case in chartCases overrides %s", leaf)
		}
	}
}

// TestDeployChart renders and lints the chart for every case, and has the
// API server validate every object it renders (server-side dry run).
// cert-manager's and the Prometheus Operator's kinds come from minimal CRDs
// (x-kubernetes-preserve-unknown-fields): the dry run proves their apiVersion,
// kind and metadata, not their spec.
func TestDeployChart(t *testing.T) {
	root := repoRoot(t)
	ch, err := chart.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	c := startPlainCluster(t)
	ctx := testContext(t)
	for _, ns := range chartCaseNamespaces {
		if err := demo.EnsureNamespace(ctx, c.Client, ns); err != nil {
			t.Fatal(err)
		}
	}
	k := newKubeAPI(t, c.Config)
	k.installCRDs(ctx, t)
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := chart.ParseValues(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			o := chart.Options{Release: tc.release, Namespace: tc.namespace, Values: vals}
			if err := chart.Lint(root, o); err != nil {
				t.Errorf("helm lint: %v", err)
			}
			r, err := chart.Render(ch, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range r.Objects() {
				if err := k.dryRun(ctx, obj); err != nil {
					t.Errorf("%s %s/%s refused: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				}
			}
		})
	}
	t.Run("release namespace enforcing Pod Security restricted", func(t *testing.T) {
		checkPodSecurityRestricted(ctx, t, c, ch)
	})
}

// checkPodSecurityRestricted: with the agent in a namespace of its own, the
// webhook's and the arbiter's pods pass Pod Security "restricted" in the
// release namespace; the agent's pods would not, and do not need to.
func checkPodSecurityRestricted(ctx context.Context, t *testing.T, c *localcluster.Cluster, ch *helmchart.Chart) {
	const release, agents = "gpuslice-restricted", "gpuslice-agents"
	for ns, level := range map[string]string{release: "restricted", agents: "privileged"} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{workload.LabelPodSecurityEnforce: level}}}
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The agent's pod names RuntimeClass nvidia, which K3s ships.
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
	if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	vals, err := chart.ParseValues(`{agent: {namespace: ` + agents + `}, arbiter: {enabled: true, agents: true}}`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := chart.Render(ch, chart.Options{Namespace: release, Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	// Pod Security judges pods, not their controllers: create each pod
	// template as a pod (dry run) where its controller would.
	podOf := func(kind, name string) *corev1.Pod {
		u := r.Find(kind, name)
		if u == nil {
			t.Fatalf("no %s %s rendered", kind, name)
		}
		raw, found, err := unstructured.NestedMap(u.Object, "spec", "template", "spec")
		if err != nil || !found {
			t.Fatalf("%s %s has no pod template: %v", kind, name, err)
		}
		var spec corev1.PodSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
			t.Fatal(err)
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: u.GetNamespace()}, Spec: spec}
	}
	create := func(p *corev1.Pod) error {
		_, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	agent := podOf("DaemonSet", "gpuslice-agent")
	if agent.Namespace != agents {
		t.Errorf("agent rendered into %q, want %q", agent.Namespace, agents)
	}
	for _, p := range []*corev1.Pod{podOf("Deployment", "gpuslice-webhook"), podOf("Deployment", "gpuslice-arbiter"), agent} {
		if err := create(p); err != nil {
			t.Errorf("%s's pod refused in namespace %s: %v", p.Name, p.Namespace, err)
		}
	}
	// The check is real: the agent's pod is refused in the restricted one.
	agent.Namespace = release
	if err := create(agent); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("the agent's pod in a restricted namespace: err = %v, want Pod Security's refusal", err)
	}
}

// TestDeployExamples: the examples' namespaces are created, every other
// object passes a server-side dry run.
func TestDeployExamples(t *testing.T) {
	objs := exampleObjects(t)
	c := startPlainCluster(t)
	ctx := testContext(t)
	k := newKubeAPI(t, c.Config)
	for _, obj := range objs {
		var err error
		if obj.GetKind() == "Namespace" {
			err = k.apply(ctx, obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, obj := range objs {
		if obj.GetKind() != "Namespace" {
			if err := k.dryRun(ctx, obj); err != nil {
				t.Errorf("%s %s/%s refused: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
}

// TestExamplesMatchDemo: the examples are the workloads `gpuslice demo`
// plays, written the gpuslice way.
func TestExamplesMatchDemo(t *testing.T) {
	byName := map[string]*unstructured.Unstructured{}
	for _, obj := range exampleObjects(t) {
		byName[obj.GetKind()+"/"+obj.GetNamespace()+"/"+obj.GetName()] = obj
	}
	deploymentOf := func(ns, name string) *appsv1.Deployment {
		t.Helper()
		var d appsv1.Deployment
		fromUnstructured(t, byName["Deployment/"+ns+"/"+name], &d)
		return &d
	}
	for _, w := range seed.SeedWorkloads() {
		want := w.Deployment
		got := deploymentOf(want.Namespace, want.Name)
		if !equalMaps(got.Annotations, want.Annotations) {
			t.Errorf("%s: Deployment annotations %v, want %v", want.Name, got.Annotations, want.Annotations)
		}
		if !equalMaps(got.Spec.Template.Annotations, want.Spec.Template.Annotations) {
			t.Errorf("%s: pod annotations %v, want %v", want.Name, got.Spec.Template.Annotations, want.Spec.Template.Annotations)
		}
		gc, wc := got.Spec.Template.Spec.Containers[0], want.Spec.Template.Spec.Containers[0]
		if gc.Image != wc.Image || !equalJSON(t, gc.Resources, wc.Resources) || !equalJSON(t, gc.Env, wc.Env) {
			t.Errorf("%s: container %s %v %v, want %s %v %v", want.Name, gc.Image, gc.Resources, gc.Env, wc.Image, wc.Resources, wc.Env)
		}
		if !equalMaps(got.Spec.Template.Spec.NodeSelector, want.Spec.Template.Spec.NodeSelector) {
			t.Errorf("%s: nodeSelector %v", want.Name, got.Spec.Template.Spec.NodeSelector)
		}
	}
	// The nightly training CronJob is seed.TrainingCronJob's policy,
	// shares and memory.
	var cj batchv1.CronJob
	fromUnstructured(t, byName["CronJob/ai/nightly-training"], &cj)
	want := seed.TrainingCronJob("ai", "nightly-training")
	gt, wt := cj.Spec.JobTemplate.Spec.Template, want.Spec.JobTemplate.Spec.Template
	if cj.Annotations[workload.AnnotationPreemptible] != want.Annotations[workload.AnnotationPreemptible] ||
		cj.Annotations[workload.AnnotationActiveHours] != want.Annotations[workload.AnnotationActiveHours] ||
		cj.Spec.Schedule != want.Spec.Schedule || cj.Spec.ConcurrencyPolicy != want.Spec.ConcurrencyPolicy ||
		gt.Spec.PriorityClassName != wt.Spec.PriorityClassName || !equalMaps(gt.Annotations, wt.Annotations) ||
		!equalJSON(t, gt.Spec.Containers[0].Resources, wt.Spec.Containers[0].Resources) {
		t.Errorf("examples/nightly-training.yaml differs from seed.TrainingCronJob: %+v", cj)
	}
	checkExamplesGetTheGPU(t, byName)
	vllm := seed.VLLMWorkload()
	var cm corev1.ConfigMap
	fromUnstructured(t, byName["ConfigMap/ai-dev/vllm-config"], &cm)
	if !equalMaps(cm.Data, vllm.ConfigMap.Data) {
		t.Errorf("vllm-config %v, want %v", cm.Data, vllm.ConfigMap.Data)
	}
	got := deploymentOf("ai-dev", "vllm-server")
	if a := got.Spec.Template.Annotations; a[workload.AnnotationProfiles] != "nvidia" || a[workload.AnnotationShares] != "2" {
		t.Errorf("vLLM annotations %v, want the hybrid method: gpu-directories nvidia, gpu-shares 2", a)
	}
	if !equalMaps(got.Spec.Selector.MatchLabels, vllm.Deployment.Spec.Selector.MatchLabels) {
		t.Errorf("vLLM selector %v, want %v (the seed's -l app=vllm)", got.Spec.Selector.MatchLabels, vllm.Deployment.Spec.Selector.MatchLabels)
	}
}

// checkExamplesGetTheGPU: every example pod that requests shares, once the
// webhook has mutated it, runs under the nvidia runtime class (K3s's
// default is runc: a share and no GPU) and leaves NVIDIA_VISIBLE_DEVICES to
// the device plugin.
func checkExamplesGetTheGPU(t *testing.T, byName map[string]*unstructured.Unstructured) {
	t.Helper()
	cfg := inject.DefaultConfig(chart.DefaultNamespace)
	for key, obj := range byName {
		if obj.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		fromUnstructured(t, obj, &d)
		raw, err := json.Marshal(&corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec})
		if err != nil {
			t.Fatal(err)
		}
		pod, err := inject.DecodePod(raw)
		if err != nil {
			t.Fatal(err)
		}
		patch, err := cfg.Mutate(d.Namespace, pod).PatchJSON()
		if err != nil {
			t.Fatal(err)
		}
		if len(patch) > 0 {
			p, err := jsonpatch.DecodePatch(patch)
			if err != nil {
				t.Fatal(err)
			}
			if raw, err = p.Apply(raw); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if pod, err = inject.DecodePod(raw); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range pod.Spec.Containers {
			if _, shares := c.Resources.Limits[workload.SharedResource]; !shares {
				continue
			}
			if rc := pod.Spec.RuntimeClassName; rc == nil || *rc != "nvidia" {
				t.Errorf("%s: container %s requests %s but the pod runs under runtime class %v, not nvidia", key, c.Name, workload.SharedResource, rc)
			}
			if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == inject.EnvVisibleDevices }) {
				t.Errorf("%s: container %s requests shares and sets %s, overriding the device plugin's", key, c.Name, inject.EnvVisibleDevices)
			}
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(mapKeys(a), func(k string) bool { v, ok := b[k]; return !ok || v != a[k] })
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// TestDeployInstall installs the default manifests on the local control
// plane and runs the webhook exactly as the chart's Deployment does: its
// container args, POD_NAMESPACE, and the chart's ServiceAccount (through
// impersonation, so the chart's RBAC is what the webhook gets). Then the
// Plex and vLLM examples must come back mutated.
//
// There is no kubelet or kube-proxy: the webhook runs as a local process on
// a free port, and the Service is patched (only the Service) to
// type ExternalName, externalName 127.0.0.1. kube-apiserver's service
// resolver (proxy.ResolveCluster, used for webhooks without
// --enable-aggregator-routing) resolves an ExternalName Service to
// externalName:<the registration's service port> and still verifies the
// certificate for <service>.<namespace>.svc. So the chart is rendered with
// webhook.service.port set to the webhook's port; everything else is the
// defaults.
func TestDeployInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := localcluster.EnsureBinaries(ctx, io.Discard); err != nil {
		t.Fatalf("control-plane binaries: %v", err)
	}
	// The controller manager turns the examples' Deployments into pods.
	c, err := localcluster.Start(ctx, localcluster.Options{ControllerManager: true})
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(c.Stop)

	in := installChart(ctx, t, c, nil)
	exited, metricsAddr := in.exited, in.metricsAddr
	k := newKubeAPI(t, c.Config)

	objs := exampleObjects(t)
	for _, obj := range objs {
		if obj.GetKind() == "Namespace" {
			if err := k.apply(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
	}
	plex := exampleDeployment(t, objs, "media", "plex")
	// Ready when the API server, going through the Service, gets Plex's pod
	// mutated: certificate, caBundle, RBAC and Service all work.
	var last string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("the webhook exited: %v", err)
		default:
		}
		p := podOf(plex)
		got, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		return len(got.Spec.Volumes) == 3, nil
	})
	if err != nil {
		t.Fatalf("the installed webhook never mutated Plex: %v (last answer: %s)", err, last)
	}
	mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, registration.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := c.Client.CoreV1().Secrets(chart.DefaultNamespace).Get(ctx, "gpu-webhook-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the CA Secret the chart's ServiceAccount should have created: %v", err)
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, secret.Data[corev1.TLSCertKey]) {
		t.Error("the registration's caBundle is not the CA in gpu-webhook-ca")
	}

	for _, obj := range objs {
		if obj.GetKind() != "Namespace" && (obj.GetName() == "plex" || obj.GetNamespace() == "ai-dev") {
			if err := k.apply(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := waitForPod(ctx, t, c, "media", "app=plex")
	checkDevices(t, p)

	v := waitForPod(ctx, t, c, "ai-dev", "app=vllm")
	checkDevices(t, v)
	res := v.Spec.Containers[0].Resources
	shares := corev1.ResourceName(workload.SharedResource)
	if q := res.Requests[shares]; q.Value() != 2 {
		t.Errorf("vLLM requests %v, want 2 %s from gpu-shares", res.Requests, shares)
	}
	if q := res.Limits[shares]; q.Value() != 2 {
		t.Errorf("vLLM limits %v, want 2 %s from gpu-shares", res.Limits, shares)
	}
	// The device plugin's NVIDIA_VISIBLE_DEVICES names the GPU the shares
	// were allocated on; the webhook must not override it.
	if slices.ContainsFunc(v.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "NVIDIA_VISIBLE_DEVICES" }) {
		t.Errorf("vLLM env %v sets NVIDIA_VISIBLE_DEVICES, overriding the device plugin's", v.Spec.Containers[0].Env)
	}

	// The plain-HTTP metrics port the ServiceMonitor scrapes counts them.
	body := httpGet(t, "http://"+metricsAddr+"/metrics")
	if !strings.Contains(body, `gpuslice_webhook_admission_requests_total{outcome="mutated"}`) {
		t.Errorf("metrics do not count the mutations:\n%s", body)
	}
}

// chartInstall is the chart (rendered plain) applied to a local control
// plane, with the built binary serving as the chart's webhook Deployment
// would: its args, under its ServiceAccount. The API server reaches it
// through the chart's Service, made an ExternalName for loopback.
type chartInstall struct {
	// bin is the gpuslice binary the webhook runs.
	bin         string
	metricsAddr string
	// exited reports the webhook exiting before the test ends.
	exited <-chan error
}

// installChart installs the chart with webhookValues (nil: the defaults)
// as the webhook's values.
func installChart(ctx context.Context, t *testing.T, c *localcluster.Cluster, webhookValues map[string]any) *chartInstall {
	t.Helper()
	bin := buildBinary(t, "gpuslice", "gpuslice")
	addr := freeAddr(t)
	_, portStr, _ := strings.Cut(addr, ":")
	port, _ := strconv.Atoi(portStr)
	ch, err := chart.Load(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	webhook := maps.Clone(webhookValues)
	if webhook == nil {
		webhook = map[string]any{}
	}
	webhook["service"] = map[string]any{"port": port}
	r, err := chart.Render(ch, chart.Options{Plain: true, Values: map[string]any{"webhook": webhook}})
	if err != nil {
		t.Fatal(err)
	}
	k := newKubeAPI(t, c.Config)
	if err := demo.EnsureNamespace(ctx, c.Client, chart.DefaultNamespace); err != nil {
		t.Fatal(err)
	}
	for _, obj := range r.Objects() {
		if err := k.apply(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	// K3s ships RuntimeClass nvidia (the chart leaves it alone by default);
	// the API server refuses pods naming a RuntimeClass that does not exist.
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
	if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := r.OfKind("Service")
	svcName := registration.DefaultService
	if !slices.ContainsFunc(svc, func(u *unstructured.Unstructured) bool { return u.GetName() == svcName }) {
		t.Fatalf("the chart renders no Service %s", svcName)
	}
	patch := []byte(`{"spec":{"type":"ExternalName","externalName":"127.0.0.1"}}`)
	if _, err := c.Client.CoreV1().Services(chart.DefaultNamespace).Patch(ctx, svcName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		t.Fatalf("making Service %s an ExternalName: %v", svcName, err)
	}

	var d appsv1.Deployment
	fromUnstructured(t, r.Find("Deployment", "gpuslice-webhook"), &d)
	pod := d.Spec.Template.Spec
	metricsAddr := freeAddr(t)
	args := append(slices.Clone(pod.Containers[0].Args),
		"--kubeconfig", c.Kubeconfig,
		"--as", "system:serviceaccount:"+chart.DefaultNamespace+":"+pod.ServiceAccountName,
		"--listen-address", addr, "--metrics-address", metricsAddr)
	exited := runWebhook(t, bin, args)
	return &chartInstall{bin: bin, metricsAddr: metricsAddr, exited: exited}
}

// checkDevices: the seed's "What the Webhook Injects".
func checkDevices(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if p.Spec.RuntimeClassName == nil || *p.Spec.RuntimeClassName != "nvidia" {
		t.Errorf("%s: runtimeClassName %v, want nvidia", p.Name, p.Spec.RuntimeClassName)
	}
	var paths []string
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil {
			paths = append(paths, v.HostPath.Path)
		}
	}
	want := []string{"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"}
	if len(p.Spec.Volumes) != 3 || !slices.Equal(paths, want) {
		t.Errorf("%s: volumes %v, want hostPaths %v", p.Name, p.Spec.Volumes, want)
	}
	if n := len(p.Spec.Containers[0].VolumeMounts); n != 3 {
		t.Errorf("%s: %d mounts, want 3", p.Name, n)
	}
}

func podOf(d *appsv1.Deployment) *corev1.Pod {
	tmpl := d.Spec.Template.DeepCopy()
	tmpl.ObjectMeta.GenerateName = d.Name + "-probe-"
	tmpl.ObjectMeta.Namespace = d.Namespace
	return &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
}

func waitForPod(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns, selector string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		pod = &list.Items[0]
		return true, nil
	})
	if err != nil {
		t.Fatalf("no pod %s in %s from its Deployment: %v", selector, ns, err)
	}
	return pod
}

// runWebhook starts the built binary and stops it (SIGTERM, as the kubelet
// does) when the test ends; the channel reports an early exit.
func runWebhook(t *testing.T, bin string, args []string) <-chan error {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "webhook.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+chart.DefaultNamespace)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logFile.Close()
		exited <- err
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("webhook %v log:\n%s", args, log)
		}
	})
	return exited
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildBinary builds a command of this module (cmd/NAME) under the given
// file name, with cgo as the image builds it.
func buildBinary(t *testing.T, command, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gpuslice/gpuslice/cmd/"+command)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// TestDeployBinary: the binary installed as the kubectl plugin names
// itself "kubectl gpuslice"; the chart's container args are flags it has.
func TestDeployBinary(t *testing.T) {
	plugin := buildBinary(t, "gpuslice", "kubectl-gpuslice")
	plain := filepath.Join(filepath.Dir(plugin), "gpuslice")
	if err := os.Link(plugin, plain); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
		}
		return string(out)
	}

	t.Run("kubectl plugin", func(t *testing.T) {
		help := run(plugin, "--help")
		for _, want := range []string{"kubectl gpuslice [command]", `Use "kubectl gpuslice [command] --help"`, "--kubeconfig", "--context", "--namespace"} {
			if !strings.Contains(help, want) {
				t.Errorf("kubectl-gpuslice --help lacks %q:\n%s", want, help)
			}
		}
		help = run(plugin, "webhook", "--help")
		for _, want := range []string{"kubectl gpuslice webhook [flags]", "  kubectl gpuslice webhook --self-signed --register"} {
			if !strings.Contains(help, want) {
				t.Errorf("kubectl-gpuslice webhook --help lacks %q:\n%s", want, help)
			}
		}
		if regexp.MustCompile(`(?m)^\s*gpuslice `).MatchString(help) {
			t.Errorf("an example still reads as the plain binary:\n%s", help)
		}
		if help := run(plain, "--help"); strings.Contains(help, "kubectl gpuslice") || !strings.Contains(help, "gpuslice [command]") {
			t.Errorf("gpuslice --help should name itself gpuslice:\n%s", help)
		}
	})

	t.Run("through kubectl", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("no kubectl on PATH")
		}
		cmd := exec.Command(kubectl, "gpuslice", "--help")
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(plugin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "kubectl gpuslice [command]") {
			t.Errorf("kubectl gpuslice --help: %v\n%s", err, out)
		}
	})

	t.Run("chart args are flags", func(t *testing.T) {
		ch, err := chart.Load(repoRoot(t))
		if err != nil {
			t.Fatal(err)
		}
		// The image's programs, by the container command that runs them
		// (none: the entrypoint, gpuslice).
		programs := map[string]string{"": plain, image.AgentBinary: buildBinary(t, "gpuslice-agent", "gpuslice-agent")}
		for _, tc := range chartCases {
			vals, err := chart.ParseValues(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			r, err := chart.Render(ch, chart.Options{Release: tc.release, Namespace: tc.namespace, Values: vals})
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range append(r.OfKind("Deployment"), r.OfKind("DaemonSet")...) {
				var spec corev1.PodTemplateSpec
				tmpl, _, err := unstructured.NestedMap(obj.Object, "spec", "template")
				if err != nil {
					t.Fatal(err)
				}
				fromMap(t, tmpl, &spec)
				for _, ctr := range spec.Spec.Containers {
					bin, ok := programs[strings.Join(ctr.Command, " ")]
					if !ok {
						t.Errorf("%s: %s %s runs %q, which the image does not have", tc.name, obj.GetKind(), obj.GetName(), ctr.Command)
						continue
					}
					// Flags are parsed before --help is honoured: an unknown one fails.
					cmd := exec.Command(bin, append(slices.Clone(ctr.Args), "--help")...)
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Errorf("%s: %s %s's args %v: %v\n%s", tc.name, obj.GetKind(), obj.GetName(), ctr.Args, err, out)
					}
				}
			}
		}
	})
}

// kubeAPI sends unstructured objects to the API server, finding their
// resources through discovery.
type kubeAPI struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKubeAPI(t *testing.T, cfg *rest.Config) *kubeAPI {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeAPI{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (k *kubeAPI) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		k.mapper.Reset() // a CRD established since discovery was cached
		m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return k.dyn.Resource(m.Resource), nil
	}
	// kubectl apply would put it in the current context's namespace.
	if obj.GetNamespace() == "" {
		return nil, fmt.Errorf("%s %s has no namespace", obj.GetKind(), obj.GetName())
	}
	return k.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
}

func (k *kubeAPI) dryRun(ctx context.Context, obj *unstructured.Unstructured) error {
	ri, err := k.resource(obj)
	if err != nil {
		return err
	}
	_, err = ri.Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
	return err
}

// apply is kubectl apply --server-side.
func (k *kubeAPI) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	ri, err := k.resource(obj)
	if err != nil {
		return err
	}
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// minimalCRDs stand in for cert-manager's and the Prometheus Operator's.
var minimalCRDs = []struct{ group, kind, plural string }{
	{"cert-manager.io", "Issuer", "issuers"},
	{"cert-manager.io", "Certificate", "certificates"},
	{"monitoring.coreos.com", "ServiceMonitor", "servicemonitors"},
	{"monitoring.coreos.com", "PrometheusRule", "prometheusrules"},
}

func (k *kubeAPI) installCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	version := map[string]string{"cert-manager.io": "v1", "monitoring.coreos.com": "v1"}
	for _, c := range minimalCRDs {
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": c.plural + "." + c.group},
			"spec": map[string]any{
				"group": c.group, "scope": "Namespaced",
				"names": map[string]any{"kind": c.kind, "plural": c.plural, "singular": strings.ToLower(c.kind), "listKind": c.kind + "List"},
				"versions": []any{map[string]any{
					"name": version[c.group], "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object", "x-kubernetes-preserve-unknown-fields": true,
					}},
				}},
			},
		}}
		if _, err := k.dyn.Resource(gvr).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating CRD %s: %v", crd.GetName(), err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := k.dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			return slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			}), nil
		})
		if err != nil {
			t.Fatalf("CRD %s never established: %v", crd.GetName(), err)
		}
	}
	k.mapper.Reset()
}

// exampleObjects reads every object in examples/*.yaml, namespaces first.
func exampleObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(obj.Object) > 0 {
				out = append(out, obj)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		return boolInt(b.GetKind() == "Namespace") - boolInt(a.GetKind() == "Namespace")
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func exampleDeployment(t *testing.T, objs []*unstructured.Unstructured, ns, name string) *appsv1.Deployment {
	t.Helper()
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" && obj.GetNamespace() == ns && obj.GetName() == name {
			var d appsv1.Deployment
			fromUnstructured(t, obj, &d)
			return &d
		}
	}
	t.Fatalf("no example Deployment %s/%s", ns, name)
	return nil
}

// fromUnstructured decodes strictly: a misspelt field fails the test
// instead of vanishing.
func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if u == nil {
		t.Fatal("object not found")
	}
	fromMap(t, u.Object, into)
}

func fromMap(t *testing.T, m map[string]any, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, into, true); err != nil {
		t.Fatal(err)
	}
}
