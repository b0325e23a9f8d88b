package realnode

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/image"
	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// FieldManager applies the chart on the real node.
const FieldManager = "gpuslice-realnode"

// AgentDaemonSet is the chart's agent DaemonSet, in chart.DefaultNamespace.
const AgentDaemonSet = "gpuslice-agent"

// AgentPort is the agent's metrics port with the chart's defaults.
const AgentPort = 9400

// ImportGpusliceImage builds the gpuslice image with hack/image's code
// for this machine and imports it as a K3s user would (ctr -n k8s.io
// images import). It returns the image's labels.
func (n *RealNode) ImportGpusliceImage(ctx context.Context) (map[string]string, error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	version, err := image.ChartVersion(root)
	if err != nil {
		return nil, err
	}
	spec := image.GpusliceSpec(root, version, image.GitCommit(ctx, root))
	img, err := image.Build(ctx, spec, image.HostPlatform())
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(n.dir, "images", "gpuslice.tar")
	if err := image.WriteTarball(file, spec.Ref, img); err != nil {
		return nil, err
	}
	return cfg.Config.Labels, n.ImportImage(ctx, file)
}

// RenderChart renders the chart with values over its defaults, except
// that the agent loads the node's stand-in NVML (--nvml-library, the
// chart's agent.nvmlLibrary) from its folder, mounted where the NVIDIA
// container runtime would mount the driver's library on a GPU node. With
// agent.hostPID false (the host's /proc at /host/proc), the stand-in
// library looks for its processes there too, as the driver would not
// need to.
func (n *RealNode) RenderChart(values map[string]any) (*chart.Rendered, error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	ch, err := chart.Load(root)
	if err != nil {
		return nil, err
	}
	merged := map[string]any{}
	for k, v := range values {
		merged[k] = v
	}
	agentValues := map[string]any{}
	if a, ok := values["agent"].(map[string]any); ok {
		for k, v := range a {
			agentValues[k] = v
		}
	}
	agentValues["nvmlLibrary"] = n.NVML.Library
	merged["agent"] = agentValues
	r, err := chart.Render(ch, chart.Options{Plain: true, Values: merged})
	if err != nil {
		return nil, err
	}
	obj := r.Find("DaemonSet", AgentDaemonSet)
	if obj == nil {
		return r, nil
	}
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &ds); err != nil {
		return nil, err
	}
	n.NVML.Mount(&ds.Spec.Template.Spec, "agent", false)
	if !ds.Spec.Template.Spec.HostPID {
		c := &ds.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: nvmltest.EnvProcRoot, Value: "/host/proc"})
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&ds)
	if err != nil {
		return nil, err
	}
	obj.Object = u
	return r, nil
}

// Apply is kubectl apply --server-side of each object, in order.
func (n *RealNode) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(n.Config)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(n.Config)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("no resource for %s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if obj.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// InstallChart builds and imports the gpuslice image, applies the chart
// (RenderChart with values) and the RuntimeClass nvidia K3s ships, and
// waits until the API server reaches the webhook through its Service.
// It returns the image's labels.
func (n *RealNode) InstallChart(ctx context.Context, values map[string]any) (map[string]string, error) {
	labels, err := n.ImportGpusliceImage(ctx)
	if err != nil {
		return nil, err
	}
	r, err := n.RenderChart(values)
	if err != nil {
		return nil, err
	}
	if err := demo.EnsureNamespace(ctx, n.Client, chart.DefaultNamespace); err != nil {
		return nil, err
	}
	if err := n.Apply(ctx, r.Objects()); err != nil {
		return nil, err
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
	if _, err := n.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating RuntimeClass nvidia: %w", err)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Find("Deployment", "gpuslice-webhook").Object, &d); err != nil {
		return nil, err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := n.Client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d/%d available", got.Status.AvailableReplicas, *d.Spec.Replicas)
		return got.Status.AvailableReplicas == *d.Spec.Replicas, nil
	})
	if err != nil {
		pods, _ := n.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{})
		var states []string
		for _, p := range pods.Items {
			states = append(states, fmt.Sprintf("%s %s %v%s", p.Name, p.Status.Phase, p.Status.ContainerStatuses, n.Events(ctx, p.Namespace, p.Name)))
		}
		return nil, fmt.Errorf("the webhook Deployment %s/%s never became available (%s): %w\npods:\n%s", d.Namespace, d.Name, last, err, strings.Join(states, "\n"))
	}
	// Ready pods are not yet a routed Service: kube-proxy programs the
	// ClusterIP once it sees the endpoints. The API server calling the
	// webhook for a dry-run pod is the condition that matters.
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := n.MutateProbe(ctx)
		if err != nil {
			last = err.Error()
		}
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the API server never reached the webhook through its Service: %w (last: %s)", err, last)
	}
	return labels, nil
}

// TestboxPod is a pod running the testbox image on the node.
func (n *RealNode) TestboxPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": n.Name},
			Containers: []corev1.Container{{
				Name: "main", Image: TestboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/testbox", "sleep"},
			}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
}

// MutateProbe creates an annotated pod as a dry run, which the API server
// sends to the webhook through its Service.
func (n *RealNode) MutateProbe(ctx context.Context) (*corev1.Pod, error) {
	p := n.TestboxPod("default", "probe")
	p.Annotations = map[string]string{workload.AnnotationProfiles: "nvidia"}
	return n.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// Events lists an object's events, for failure messages.
func (n *RealNode) Events(ctx context.Context, ns, name string) string {
	list, err := n.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// Standins say which containers of a workload stand in for what.
type Standins struct {
	// GPU are the containers that hold GPU memory (testbox gpu), with the
	// MiB each holds; "" reads GPU_MEMORY_UTILIZATION, as vLLM.
	GPU map[string]string
	// Plex is the container that serves the stand-in Plex (testbox plex).
	Plex string
	// GracePeriod is the pod's termination grace period; nil keeps the
	// workload's own (Kubernetes' 30 s when unset).
	GracePeriod *int64
}

// UseTestbox makes a workload's pod template run the testbox image, as
// the seed's images cannot be pulled here: same annotations, resources,
// env and node selector. The GPU containers run testbox gpu, which holds
// their memory on the node's stand-in NVML as a real process and answers
// on nvmltest.WorkloadPort (its readiness probe); the Plex container
// serves /status/sessions; the others sleep.
func (n *RealNode) UseTestbox(spec *corev1.PodSpec, s Standins) {
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Image, c.ImagePullPolicy = TestboxImage, corev1.PullNever
		c.Command, c.Args = []string{"/testbox", "sleep"}, nil
		c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = nil, nil, nil
		if c.Name == s.Plex {
			c.Command = []string{"/testbox", "plex"}
		}
		mib, ok := s.GPU[c.Name]
		if !ok {
			continue
		}
		c.Command = []string{"/testbox", "gpu"}
		if mib != "" {
			c.Env = append(c.Env, corev1.EnvVar{Name: nvmltest.EnvWorkloadMiB, Value: mib})
		}
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(nvmltest.WorkloadPort)}},
			PeriodSeconds: 1,
		}
		n.NVML.Mount(spec, c.Name, true)
	}
	spec.TerminationGracePeriodSeconds = s.GracePeriod
}

// SetTranscoding starts or ends the stand-in Plex's hardware transcode,
// through the API server's pods proxy.
func (n *RealNode) SetTranscoding(ctx context.Context, plex *corev1.Pod, on bool) error {
	req := n.Client.CoreV1().RESTClient().Post().Namespace(plex.Namespace).Resource("pods").
		Name(plex.Name+":"+strconv.Itoa(plextest.Port)).SubResource("proxy").Suffix(plextest.TranscodeSwitchPath).Param("on", strconv.FormatBool(on))
	if body, err := req.DoRaw(ctx); err != nil {
		return fmt.Errorf("switching the stand-in Plex %s/%s's transcode to %v: %w: %s", plex.Namespace, plex.Name, on, err, body)
	}
	return nil
}

// SetGPUMemory makes a stand-in GPU workload hold mib MiB, as a process
// whose memory grows.
func (n *RealNode) SetGPUMemory(ctx context.Context, pod *corev1.Pod, mib int) error {
	req := n.Client.CoreV1().RESTClient().Post().Namespace(pod.Namespace).Resource("pods").
		Name(pod.Name+":"+strconv.Itoa(nvmltest.WorkloadPort)).SubResource("proxy").Suffix("memory").Param("mib", strconv.Itoa(mib))
	if body, err := req.DoRaw(ctx); err != nil {
		return fmt.Errorf("setting %s/%s's GPU memory to %d MiB: %w: %s", pod.Namespace, pod.Name, mib, err, body)
	}
	return nil
}

// GPUMemory is the MiB a stand-in GPU workload says it holds.
func (n *RealNode) GPUMemory(ctx context.Context, pod *corev1.Pod) (int, error) {
	body, err := n.Client.CoreV1().RESTClient().Get().Namespace(pod.Namespace).Resource("pods").
		Name(pod.Name + ":" + strconv.Itoa(nvmltest.WorkloadPort)).SubResource("proxy").Suffix("memory").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading %s/%s's GPU memory: %w: %s", pod.Namespace, pod.Name, err, body)
	}
	return strconv.Atoi(strings.TrimSpace(string(body)))
}

// AgentMetrics reads an agent's /metrics through the API server's pods
// proxy, as gpuslice top and the arbiter do.
func (n *RealNode) AgentMetrics(ctx context.Context, agent *corev1.Pod) (map[string]*dto.MetricFamily, error) {
	body, err := n.Client.CoreV1().Pods(agent.Namespace).ProxyGet("", agent.Name, strconv.Itoa(AgentPort), "metrics", nil).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping the agent %s through the pods proxy: %w", agent.Name, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(body))
}

// Sample is the value of the series of name whose labels include want.
func Sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match == len(want) {
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// HostPID is a stand-in GPU workload's PID on the host.
func (n *RealNode) HostPID(ctx context.Context, pod *corev1.Pod) (int, error) {
	body, err := n.Client.CoreV1().RESTClient().Get().Namespace(pod.Namespace).Resource("pods").
		Name(pod.Name + ":" + strconv.Itoa(nvmltest.WorkloadPort)).SubResource("proxy").Suffix("pid").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading %s/%s's host PID: %w: %s", pod.Namespace, pod.Name, err, body)
	}
	return strconv.Atoi(strings.TrimSpace(string(body)))
}

// ArbiterValues are the chart values that run the arbiter (one replica)
// on the node: the agents as its memory source, the stand-in Plex at
// plexURL as media/plex's activity, a 1 s signal interval and holdDown.
func ArbiterValues(plexURL, holdDown string) map[string]any {
	return map[string]any{"arbiter": map[string]any{
		"enabled": true, "replicas": 1, "agents": true, "interval": "1s", "holdDown": holdDown,
		"plex":                map[string]any{"url": plexURL},
		"podDisruptionBudget": map[string]any{"enabled": false},
		// The seed's workloads rank by their gpuslice.io/priority
		// annotations: their namespaces are the admin's own, trusted.
		"trustedNamespaces": []any{"ai", "ai-dev"},
	}}
}

// ArbiterDeployment is the chart's arbiter Deployment, in
// chart.DefaultNamespace.
const ArbiterDeployment = "gpuslice-arbiter"

// PlexURL is the stand-in Plex's address in its pod.
func PlexURL(plex *corev1.Pod) string {
	return "http://" + plex.Status.PodIP + ":" + strconv.Itoa(plextest.Port)
}
