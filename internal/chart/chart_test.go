package chart

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

func testRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadChart(t *testing.T) *helmchart.Chart {
	t.Helper()
	ch, err := Load(testRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func render(t *testing.T, o Options) *Rendered {
	t.Helper()
	r, err := Render(loadChart(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func values(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := ParseValues(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// convert decodes a rendered object into its typed form, refusing fields
// the type does not have (a misspelt field would otherwise vanish).
func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if u == nil {
		t.Fatalf("object not rendered")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The chart's registration must be the one `gpuslice webhook --register`
// would write for the same Service, caBundle aside.
func TestChartMutatingWebhookConfigurationMatchesBuild(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(testRoot(t), "pkg", "inject", "testdata", "config-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, namespace, values string
		want                    func(ns string, cfg *inject.Config) registration.Options
	}{
		{name: "defaults", namespace: "gpu-system", want: func(ns string, _ *inject.Config) registration.Options {
			return registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: ns}
		}},
		{name: "other namespace, port and timeout", namespace: "gpuslice",
			values: `{webhook: {timeoutSeconds: 10, service: {name: injector, port: 8443}}}`,
			want: func(ns string, _ *inject.Config) registration.Options {
				return registration.Options{ServiceName: "injector", ServiceNamespace: ns, ServicePort: 8443, TimeoutSeconds: 10}
			}},
		{name: "config with excluded namespaces", namespace: "gpu-system",
			values: "webhook:\n  config:\n" + indent(string(example), "    "),
			want: func(ns string, cfg *inject.Config) registration.Options {
				return registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: ns, ExcludedNamespaces: cfg.ExcludedNamespaces}
			}},
		{name: "admission gate", namespace: "gpu-system", values: `{webhook: {admissionGate: true}}`,
			want: func(ns string, _ *inject.Config) registration.Options {
				return registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: ns, AdmissionGate: true}
			}},
		{name: "config excluding nothing", namespace: "gpu-system",
			values: `{webhook: {config: {excludedNamespaces: []}}}`,
			want: func(ns string, cfg *inject.Config) registration.Options {
				return registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: ns, ExcludedNamespaces: cfg.ExcludedNamespaces}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, Options{Namespace: tt.namespace, Values: values(t, tt.values)})
			// The webhook resolves its config as it would read it from the ConfigMap.
			cfg := inject.DefaultConfig(tt.namespace)
			if u := r.Find("ConfigMap", "gpuslice-webhook-config"); u != nil {
				var cm corev1.ConfigMap
				convert(t, u, &cm)
				var err error
				if cfg, err = inject.ParseConfig([]byte(cm.Data["config.yaml"]), tt.namespace); err != nil {
					t.Fatalf("the webhook would refuse the rendered config: %v\n%s", err, cm.Data["config.yaml"])
				}
			}
			want := registration.Build(tt.want(tt.namespace, cfg))
			var got admissionregistrationv1.MutatingWebhookConfiguration
			convert(t, r.Find("MutatingWebhookConfiguration", registration.DefaultName), &got)
			for i := range got.Webhooks {
				if len(got.Webhooks[i].ClientConfig.CABundle) > 0 {
					t.Error("the chart writes a caBundle; a Helm upgrade would then replace the one gpuslice keeps")
				}
			}
			if g, w := asJSON(t, got.Webhooks), asJSON(t, want.Webhooks); g != w {
				t.Errorf("chart's webhooks:\n%s\nregistration.Build's:\n%s", g, w)
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// The config ConfigMap must mean to the webhook what the values say.
func TestChartWebhookConfigIsTheExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(testRoot(t), "pkg", "inject", "testdata", "config-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := inject.ParseConfig(example, "gpu-system")
	if err != nil {
		t.Fatal(err)
	}
	r := render(t, Options{Values: values(t, "webhook:\n  config:\n"+indent(string(example), "    "))})
	var cm corev1.ConfigMap
	convert(t, r.Find("ConfigMap", "gpuslice-webhook-config"), &cm)
	got, err := inject.ParseConfig([]byte(cm.Data["config.yaml"]), "gpu-system")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rendered config resolves to\n%s\nwant\n%s", asJSON(t, got), asJSON(t, want))
	}
	args := webhookArgs(t, r)
	if !slices.Contains(args, "--config=/config/config.yaml") {
		t.Errorf("webhook args %v lack --config", args)
	}
}

// webhook.profileNamespaces alone gives the webhook a config that limits
// the built-in profile, and a pod elsewhere is denied.
func TestChartProfileNamespaces(t *testing.T) {
	r := render(t, Options{Values: values(t, `{webhook: {profileNamespaces: {nvidia: [media, ai-dev]}}}`)})
	var cm corev1.ConfigMap
	convert(t, r.Find("ConfigMap", "gpuslice-webhook-config"), &cm)
	cfg, err := inject.ParseConfig([]byte(cm.Data["config.yaml"]), "gpu-system")
	if err != nil {
		t.Fatalf("the webhook would refuse the rendered config: %v\n%s", err, cm.Data["config.yaml"])
	}
	if got := cfg.Profiles[0]; got.Name != inject.BuiltinProfileName || !slices.Equal(got.Namespaces, []string{"media", "ai-dev"}) {
		t.Errorf("built-in profile %+v, want it limited to media, ai-dev", got)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"gpu-directories": "nvidia"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	if d := cfg.Mutate("ai", pod); d.Allowed || !strings.Contains(d.Message, "allowed in: media, ai-dev") {
		t.Errorf("a pod in ai: allowed=%v %q, want denied naming the allowed namespaces", d.Allowed, d.Message)
	}
	if !slices.Contains(webhookArgs(t, r), "--config=/config/config.yaml") {
		t.Errorf("webhook args %v lack --config", webhookArgs(t, r))
	}

	_, err = Render(loadChart(t), Options{Values: values(t, `{webhook: {profileNamespaces: {nvidia: [media]}, config: {profileNamespaces: {nvidia: [ai]}}}}`)})
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both places set: err = %v, want a refusal", err)
	}
}

// The admission gate gets the flag, a token even with cert-manager, and
// exactly what its informers and Events need; without it, none of that.
func TestChartAdmissionGate(t *testing.T) {
	for _, on := range []bool{false, true} {
		r := render(t, Options{Values: map[string]any{
			"webhook":      map[string]any{"admissionGate": on},
			"certificates": map[string]any{"mode": "cert-manager"},
		}})
		if got := slices.Contains(webhookArgs(t, r), "--admission-gate"); got != on {
			t.Errorf("gate %v: --admission-gate in args = %v", on, got)
		}
		if got := slices.Contains(webhookArgs(t, r), "--protected=media/plex"); got != on {
			t.Errorf("gate %v: --protected=media/plex (arbiter.plex.workload) in args = %v", on, got)
		}
		var d appsv1.Deployment
		convert(t, r.Find("Deployment", "gpuslice-webhook"), &d)
		if got := *d.Spec.Template.Spec.AutomountServiceAccountToken; got != on {
			t.Errorf("gate %v: automountServiceAccountToken = %v", on, got)
		}
		u := r.Find("ClusterRole", "gpuslice-webhook-gate")
		if (u != nil) != on {
			t.Fatalf("gate %v: ClusterRole gpuslice-webhook-gate rendered = %v", on, u != nil)
		}
		if !on {
			continue
		}
		var role rbacv1.ClusterRole
		convert(t, u, &role)
		want := map[string][]string{
			"/nodes": {"list", "watch"}, "/pods": {"list", "watch"}, "/configmaps": {"list", "watch"},
			"apps/replicasets": {"list", "watch"}, "apps/deployments": {"list", "watch"}, "apps/statefulsets": {"list", "watch"},
			"batch/cronjobs": {"list", "watch"}, "batch/jobs": {"list", "watch"},
			"scheduling.k8s.io/priorityclasses": {"list", "watch"}, "/events": {"create", "patch"},
		}
		got := map[string][]string{}
		for _, rule := range role.Rules {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					got[g+"/"+res] = append(got[g+"/"+res], rule.Verbs...)
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("gate ClusterRole grants %v, want %v", got, want)
		}
		var b rbacv1.ClusterRoleBinding
		convert(t, r.Find("ClusterRoleBinding", "gpuslice-webhook-gate"), &b)
		if b.RoleRef.Name != role.Name || len(b.Subjects) != 1 || b.Subjects[0].Name != d.Spec.Template.Spec.ServiceAccountName {
			t.Errorf("binding %+v does not bind the webhook's ServiceAccount %s", b, d.Spec.Template.Spec.ServiceAccountName)
		}
		checkGateJournal(t, r, d.Spec.Template.Spec.ServiceAccountName)
	}
}

// checkGateJournal: the gate's journal is created by the chart, empty, and
// the webhook may only get and update that one ConfigMap, with no create.
func checkGateJournal(t *testing.T, r *Rendered, serviceAccount string) {
	t.Helper()
	if !slices.Contains(webhookArgs(t, r), "--journal-name="+journal.GateName) {
		t.Errorf("webhook args %v lack --journal-name=%s", webhookArgs(t, r), journal.GateName)
	}
	var cm corev1.ConfigMap
	convert(t, r.Find("ConfigMap", journal.GateName), &cm)
	if cm.Name != journal.GateName || len(cm.Data) != 0 {
		t.Errorf("gate journal ConfigMap %q with data %v, want %s rendered empty (the webhook writes it; upgrades must not reset it)", cm.Name, cm.Data, journal.GateName)
	}
	var role rbacv1.Role
	convert(t, r.Find("Role", "gpuslice-webhook-gate-journal"), &role)
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{journal.GateName}, Verbs: []string{"get", "update"}}}
	if !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("gate journal Role grants %+v, want %+v", role.Rules, want)
	}
	var b rbacv1.RoleBinding
	convert(t, r.Find("RoleBinding", "gpuslice-webhook-gate-journal"), &b)
	if b.RoleRef.Name != role.Name || len(b.Subjects) != 1 || b.Subjects[0].Name != serviceAccount {
		t.Errorf("binding %+v does not bind the webhook's ServiceAccount %s", b, serviceAccount)
	}
}

func webhookArgs(t *testing.T, r *Rendered) []string {
	t.Helper()
	var d appsv1.Deployment
	convert(t, r.Find("Deployment", "gpuslice-webhook"), &d)
	return d.Spec.Template.Spec.Containers[0].Args
}

// The device plugin's ConfigMap is byte for byte what `gpuslice config
// render` writes.
func TestChartDevicePluginConfigMatchesRender(t *testing.T) {
	tests := []pluginconfig.RenderOptions{
		{Replicas: 8, Rename: true}, // the seed's
		{Replicas: 4, FailRequestsGreaterThanOne: true, ConfigMapName: "dp-config", Namespace: "nvidia"},
		{Replicas: 2, Rename: true, FailRequestsGreaterThanOne: true},
	}
	for _, o := range tests {
		name, ns := o.ConfigMapName, o.Namespace
		if name == "" {
			name, ns = pluginconfig.DefaultConfigMapName, pluginconfig.DefaultNamespace
		}
		vals := map[string]any{"devicePlugin": map[string]any{"config": map[string]any{
			"create": true, "replicas": o.Replicas, "rename": o.Rename,
			"failRequestsGreaterThanOne": o.FailRequestsGreaterThanOne, "name": name, "namespace": ns,
		}}}
		want, err := pluginconfig.RenderConfigMap(o)
		if err != nil {
			t.Fatal(err)
		}
		var got corev1.ConfigMap
		convert(t, render(t, Options{Values: vals}).Find("ConfigMap", name), &got)
		if got.Namespace != want.Namespace || !reflect.DeepEqual(got.Data, want.Data) {
			t.Errorf("%+v: chart renders %s/%s\n%q\nwant %s/%s\n%q", o, got.Namespace, got.Name, got.Data[pluginconfig.DefaultConfigMapKey],
				want.Namespace, want.Name, want.Data[pluginconfig.DefaultConfigMapKey])
		}
	}
	if r := render(t, Options{}); r.Find("ConfigMap", pluginconfig.DefaultConfigMapName) != nil {
		t.Error("the device plugin's ConfigMap is rendered by default; it would fight the one the cluster has")
	}
}

// A wrong value stops the install with the field and what is allowed.
func TestChartSchemaRejects(t *testing.T) {
	tests := []struct {
		values string
		want   []string
	}{
		{`{webhook: {replicas: two}}`, []string{"/webhook/replicas", "want integer"}},
		{`{certificates: {mode: vault}}`, []string{"/certificates/mode", "self-signed", "cert-manager"}},
		{`{webhook: {failurePolicy: Sometimes}}`, []string{"/webhook/failurePolicy", "Fail", "Ignore"}},
		{`{webhook: {timeoutSeconds: 31}}`, []string{"/webhook/timeoutSeconds", "30"}},
		{`{webhook: {timeoutSeconds: 0}}`, []string{"/webhook/timeoutSeconds", "1"}},
		{`{webhok: {replicas: 2}}`, []string{"webhok", "not allowed"}},
		{`{webhook: {service: {port: 70000}}}`, []string{"/webhook/service/port", "maximum"}},
		{`{devicePlugin: {config: {replicas: 1}}}`, []string{"/devicePlugin/config/replicas", "2"}},
		{`{webhook: {config: {excludedNamespaces: [Media]}}}`, []string{"/webhook/config/excludedNamespaces/0"}},
		{`{webhook: {config: {profile: []}}}`, []string{"profile", "not allowed"}},
		{`{certificates: {selfSigned: {validity: 30d}}}`, []string{"/certificates/selfSigned/validity"}},
		{`{agent: {hostPID: "yes"}}`, []string{"/agent/hostPID", "want boolean"}},
		{`{webhook: {profileNamespaces: {nvidia: [Media]}}}`, []string{"/webhook/profileNamespaces/nvidia/0"}},
		{`{webhook: {profileNamespaces: {nvidia: []}}}`, []string{"/webhook/profileNamespaces/nvidia", "minItems"}},
	}
	ch := loadChart(t)
	for _, tt := range tests {
		_, err := Render(ch, Options{Values: values(t, tt.values)})
		if err == nil {
			t.Errorf("%s: accepted", tt.values)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not mention %q:\n%v", tt.values, w, err)
			}
		}
	}
}

func TestChartRefusesServiceMonitorWithoutMetrics(t *testing.T) {
	_, err := Render(loadChart(t), Options{Values: values(t, `{serviceMonitor: {enabled: true}, webhook: {metrics: {enabled: false}}}`)})
	if err == nil || !strings.Contains(err.Error(), "webhook.metrics.enabled") {
		t.Errorf("err = %v, want one naming webhook.metrics.enabled", err)
	}
}

func TestChartLint(t *testing.T) {
	if err := Lint(testRoot(t), Options{}); err != nil {
		t.Error(err)
	}
}

// Every value in values.yaml is in the README's table, and nothing else
// is. A free-form map (resources, nodeSelector, labels) is documented as
// one row.
func TestChartReadmeDocumentsEveryValue(t *testing.T) {
	root := testRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, Dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	leaves := LeafPaths(values(t, string(raw)))
	readme, err := os.ReadFile(filepath.Join(root, Dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for line := range strings.SplitSeq(string(readme), "\n") {
		if strings.HasPrefix(line, "| `") {
			documented = append(documented, strings.SplitN(strings.TrimPrefix(line, "| `"), "`", 2)[0])
		}
	}
	covers := func(doc, leaf string) bool { return leaf == doc || strings.HasPrefix(leaf, doc+".") }
	for _, l := range leaves {
		if !slices.ContainsFunc(documented, func(d string) bool { return covers(d, l) }) {
			t.Errorf("value %s is not in %s/README.md's table", l, Dir)
		}
	}
	for _, d := range documented {
		if !slices.ContainsFunc(leaves, func(l string) bool { return covers(d, l) }) {
			t.Errorf("README.md documents %s, which values.yaml lacks", d)
		}
	}
}

func TestManifestsInSync(t *testing.T) {
	root := testRoot(t)
	want, err := Generated(root)
	if err != nil {
		t.Fatal(err)
	}
	for path, content := range want {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s is out of date with %s: run `go run ./hack/render-manifests`", path, Dir)
		}
	}
}

// The K3s HelmChart carries the chart itself: unpacked by Helm's loader it
// renders exactly what the chart directory renders, into the namespace the
// plain manifests use, which it creates with the same Pod Security label.
func TestK3sHelmChart(t *testing.T) {
	files, err := Generated(testRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(files[HelmChartFile]), "\n---\n")
	if len(docs) != 3 {
		t.Fatalf("%s holds %d documents, want a header, the Namespace and the HelmChart", HelmChartFile, len(docs))
	}
	var ns corev1.Namespace
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &ns); err != nil || ns.Name != DefaultNamespace || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %+v (%v)", ns, err)
	}
	var hc struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Spec       struct {
			TargetNamespace string `json:"targetNamespace"`
			ChartContent    string `json:"chartContent"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict([]byte(docs[2]), &hc); err != nil {
		t.Fatal(err)
	}
	if hc.APIVersion != "helm.cattle.io/v1" || hc.Kind != "HelmChart" || hc.Metadata.Namespace != "kube-system" || hc.Spec.TargetNamespace != DefaultNamespace {
		t.Errorf("HelmChart %s %s %s/%s into %s", hc.APIVersion, hc.Kind, hc.Metadata.Namespace, hc.Metadata.Name, hc.Spec.TargetNamespace)
	}
	archive, err := base64.StdEncoding.DecodeString(hc.Spec.ChartContent)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("Helm cannot load chartContent: %v", err)
	}
	for _, vals := range []string{"", `{arbiter: {enabled: true}, networkPolicy: {enabled: true}}`} {
		want := render(t, Options{Values: values(t, vals)}).YAML()
		got, err := Render(packed, Options{Values: values(t, vals)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.YAML(), want) {
			t.Errorf("values %q: the packed chart renders differently from %s", vals, Dir)
		}
	}
}

func TestPlainManifestsClaimNoHelmOwnership(t *testing.T) {
	r := render(t, Options{Plain: true})
	for _, u := range r.Objects() {
		l := u.GetLabels()
		if l["app.kubernetes.io/managed-by"] != "kubectl" || l["helm.sh/chart"] != "" {
			t.Errorf("%s %s labels %v", u.GetKind(), u.GetName(), l)
		}
	}
	helm := render(t, Options{})
	if l := helm.Objects()[0].GetLabels(); l["app.kubernetes.io/managed-by"] != "Helm" || l["helm.sh/chart"] == "" {
		t.Errorf("Helm rendering labels %v", l)
	}
}

// The arbiter is off by default; on, it runs with the flags its values
// say, under a ServiceAccount with exactly what its informers, writes,
// Events and Lease need.
func TestChartArbiter(t *testing.T) {
	for _, u := range render(t, Options{}).Objects() {
		if u.GetLabels()["app.kubernetes.io/component"] == "arbiter" {
			t.Errorf("%s %s rendered with the defaults; the arbiter is off by default", u.GetKind(), u.GetName())
		}
	}

	r := render(t, Options{Values: values(t, `arbiter: {enabled: true}`)})
	var d appsv1.Deployment
	convert(t, r.Find("Deployment", "gpuslice-arbiter"), &d)
	pod := d.Spec.Template.Spec
	ctr := pod.Containers[0]
	wantArgs := []string{"arbiter", "--listen-address=:9402", "--interval=1s", "--min-free-memory=1Gi", "--memory-margin=1Gi",
		"--hold-down=5m", "--unhealthy-grace=30s", "--time-zone=UTC", "--leader-elect-name=gpuslice-arbiter", "--journal-name=gpuslice-arbiter-journal",
		"--log-format=json", "--log-level=info"}
	if !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("args %q, want %q", ctr.Args, wantArgs)
	}
	if *d.Spec.Replicas != 2 || pod.ServiceAccountName != "gpuslice-arbiter" || !*pod.AutomountServiceAccountToken {
		t.Errorf("replicas %d, serviceAccountName %s, automount %v", *d.Spec.Replicas, pod.ServiceAccountName, *pod.AutomountServiceAccountToken)
	}
	// The command defaults --leader-elect-identity to $POD_NAME and the
	// Lease's namespace to $POD_NAMESPACE.
	env := map[string]string{}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}; !reflect.DeepEqual(env, want) {
		t.Errorf("downward API env %v, want %v", env, want)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "metrics" || ctr.Ports[0].ContainerPort != 9402 {
		t.Errorf("ports %+v, want metrics 9402", ctr.Ports)
	}
	for probe, path := range map[*corev1.Probe]string{ctr.LivenessProbe: "/healthz", ctr.ReadinessProbe: "/readyz", ctr.StartupProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v, want GET %s on port metrics", probe, path)
		}
	}
	if sc := ctr.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot {
		t.Errorf("securityContext %+v is not the restricted one", sc)
	}
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("affinity %+v, want preferred anti-affinity by hostname", a)
	}
	if len(pod.Volumes) != 0 || len(ctr.VolumeMounts) != 0 {
		t.Errorf("volumes %v without a Plex token Secret", pod.Volumes)
	}
	if r.Find("PodDisruptionBudget", "gpuslice-arbiter") == nil {
		t.Error("no PodDisruptionBudget for 2 replicas")
	}
	var svc corev1.Service
	convert(t, r.Find("Service", "gpuslice-arbiter"), &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Errorf("Service %+v does not select the arbiter's metrics port", svc.Spec)
	}

	var role rbacv1.ClusterRole
	convert(t, r.Find("ClusterRole", "gpuslice-arbiter"), &role)
	want := map[string][]string{
		"/nodes": {"list", "watch"}, "/pods": {"list", "watch"}, "/configmaps": {"list", "watch", "get", "patch"},
		"apps/replicasets": {"list", "watch"}, "apps/deployments": {"list", "watch", "get", "patch"}, "apps/statefulsets": {"list", "watch", "get", "patch"},
		"batch/cronjobs": {"list", "watch", "get", "patch"}, "batch/jobs": {"list", "watch", "get", "patch"},
		"scheduling.k8s.io/priorityclasses": {"list", "watch"}, "/events": {"create", "patch"},
	}
	if got := grants(role.Rules); !reflect.DeepEqual(got, want) {
		t.Errorf("arbiter ClusterRole grants %v, want %v", got, want)
	}
	for _, rule := range role.Rules {
		if len(rule.ResourceNames) > 0 {
			t.Errorf("cluster rule %+v is limited by name; the workloads are anyone's", rule)
		}
	}
	var crb rbacv1.ClusterRoleBinding
	convert(t, r.Find("ClusterRoleBinding", "gpuslice-arbiter"), &crb)
	var rb rbacv1.RoleBinding
	convert(t, r.Find("RoleBinding", "gpuslice-arbiter"), &rb)
	for _, b := range []struct {
		ref      rbacv1.RoleRef
		subjects []rbacv1.Subject
	}{{crb.RoleRef, crb.Subjects}, {rb.RoleRef, rb.Subjects}} {
		if b.ref.Name != "gpuslice-arbiter" || len(b.subjects) != 1 || b.subjects[0].Name != pod.ServiceAccountName || b.subjects[0].Namespace != DefaultNamespace {
			t.Errorf("binding %+v %+v does not bind the arbiter's ServiceAccount", b.ref, b.subjects)
		}
	}
	// The namespaced Role: its Lease and its journal, each updated only by
	// name.
	leaseRules := func(r *Rendered) map[string][]string {
		var role rbacv1.Role
		convert(t, r.Find("Role", "gpuslice-arbiter"), &role)
		got := grants(role.Rules)
		for _, rule := range role.Rules {
			want := map[string]string{"leases": "gpuslice-arbiter", "configmaps": "gpuslice-arbiter-journal"}[rule.Resources[0]]
			if slices.Contains(rule.Verbs, "update") && !slices.Equal(rule.ResourceNames, []string{want}) {
				t.Errorf("rule %+v: want only %s by name", rule, want)
			}
		}
		return got
	}
	journal := []string{"create", "get", "update"}
	if got, want := leaseRules(r), map[string][]string{"coordination.k8s.io/leases": {"get", "update", "create"}, "/configmaps": journal}; !reflect.DeepEqual(got, want) {
		t.Errorf("arbiter Role grants %v, want %v", got, want)
	}

	// --agents adds the pods proxy, in this namespace only; a Plex token
	// comes from a Secret mounted where --plex-token-file reads it.
	r = render(t, Options{Values: values(t, `arbiter: {enabled: true, agents: true, plex: {url: "http://plex.media.svc:32400", tokenSecret: {name: plex, key: PLEX_TOKEN}},
		protected: [home/deployment/jellyfin], trustedNamespaces: [media]}`)})
	if got, want := leaseRules(r), map[string][]string{"coordination.k8s.io/leases": {"get", "update", "create"}, "/pods/proxy": {"get"}, "/configmaps": journal}; !reflect.DeepEqual(got, want) {
		t.Errorf("arbiter Role with agents grants %v, want %v", got, want)
	}
	d = appsv1.Deployment{}
	convert(t, r.Find("Deployment", "gpuslice-arbiter"), &d)
	pod, ctr = d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0]
	var tokenFile string
	for _, a := range ctr.Args {
		if f, ok := strings.CutPrefix(a, "--plex-token-file="); ok {
			tokenFile = f
		}
	}
	for _, a := range []string{"--agents", "--agent-port=9400", "--agent-selector=app.kubernetes.io/name=gpuslice,app.kubernetes.io/instance=gpuslice,app.kubernetes.io/component=agent",
		"--plex-url=http://plex.media.svc:32400", "--plex-workload=media/plex", "--protected=home/deployment/jellyfin", "--trusted-namespace=media"} {
		if !slices.Contains(ctr.Args, a) {
			t.Errorf("args %q lack %s", ctr.Args, a)
		}
	}
	if len(pod.Volumes) != 1 || len(ctr.VolumeMounts) != 1 {
		t.Fatalf("volumes %+v, mounts %+v: want the token Secret", pod.Volumes, ctr.VolumeMounts)
	}
	v, m := pod.Volumes[0], ctr.VolumeMounts[0]
	if v.Secret == nil || v.Secret.SecretName != "plex" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "PLEX_TOKEN" ||
		m.Name != v.Name || !m.ReadOnly || tokenFile != m.MountPath+"/"+v.Secret.Items[0].Path {
		t.Errorf("--plex-token-file=%s, but Secret volume %+v is mounted as %+v", tokenFile, v.Secret, m)
	}

	// Prometheus scrapes the arbiter through its Service.
	r = render(t, Options{Values: values(t, `{arbiter: {enabled: true}, serviceMonitor: {enabled: true}}`)})
	sm := r.Find("ServiceMonitor", "gpuslice-arbiter")
	if sm == nil {
		t.Fatal("no ServiceMonitor for the arbiter")
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if !reflect.DeepEqual(sel, svc.Labels) && !reflect.DeepEqual(sel, svc.Spec.Selector) || len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
		t.Errorf("ServiceMonitor selects %v, endpoints %v; want the arbiter Service's port metrics", sel, eps)
	}
	if r := render(t, Options{Values: values(t, `{serviceMonitor: {enabled: true}}`)}); r.Find("ServiceMonitor", "gpuslice-arbiter") != nil {
		t.Error("ServiceMonitor for an arbiter that is off")
	}
}

// arbiter.workloadNamespaces takes every write out of the ClusterRole and
// grants it per namespace, ConfigMaps by name; the grants together stay
// what the cluster-wide default gives, so TestDeployArbiter (run scoped)
// covers the default too.
func TestChartArbiterWorkloadNamespaces(t *testing.T) {
	clusterWide := render(t, Options{Values: values(t, `arbiter: {enabled: true}`)})
	r := render(t, Options{Values: values(t, `arbiter: {enabled: true, workloadNamespaces: {ai: {}, ai-dev: {configMaps: [vllm-config]}}}`)})
	var defaultRole, scopedRole rbacv1.ClusterRole
	convert(t, clusterWide.Find("ClusterRole", "gpuslice-arbiter"), &defaultRole)
	convert(t, r.Find("ClusterRole", "gpuslice-arbiter"), &scopedRole)
	for _, res := range []string{"apps/deployments", "apps/statefulsets", "batch/cronjobs", "batch/jobs", "/configmaps"} {
		if got := grants(scopedRole.Rules)[res]; !slices.Equal(got, []string{"list", "watch"}) {
			t.Errorf("scoped ClusterRole grants %s %v, want list and watch only", res, got)
		}
		if got := grants(defaultRole.Rules)[res]; !slices.Equal(got, []string{"list", "watch", "get", "patch"}) {
			t.Errorf("default ClusterRole grants %s %v, want list, watch, get, patch", res, got)
		}
	}
	roles := map[string]rbacv1.Role{}
	for _, u := range r.OfKind("Role") {
		if u.GetName() == "gpuslice-arbiter-workloads" {
			var role rbacv1.Role
			convert(t, u, &role)
			roles[role.Namespace] = role
		}
	}
	if len(roles) != 2 {
		t.Fatalf("per-namespace Roles in %v, want ai and ai-dev", slices.Collect(maps.Keys(roles)))
	}
	for ns, wantConfigMaps := range map[string][]string{"ai": nil, "ai-dev": {"vllm-config"}} {
		g := grants(roles[ns].Rules)
		for _, res := range []string{"apps/deployments", "apps/statefulsets", "batch/cronjobs", "batch/jobs"} {
			if !slices.Equal(g[res], []string{"get", "patch"}) {
				t.Errorf("Role in %s grants %s %v, want get and patch", ns, res, g[res])
			}
		}
		var names []string
		for _, rule := range roles[ns].Rules {
			if slices.Contains(rule.Resources, "configmaps") {
				names = append(names, rule.ResourceNames...)
				if len(rule.ResourceNames) == 0 {
					t.Errorf("Role in %s grants every ConfigMap: %+v", ns, rule)
				}
			}
		}
		if !slices.Equal(names, wantConfigMaps) {
			t.Errorf("Role in %s grants ConfigMaps %v, want %v", ns, names, wantConfigMaps)
		}
	}
	for _, u := range r.OfKind("RoleBinding") {
		if u.GetName() != "gpuslice-arbiter-workloads" {
			continue
		}
		var rb rbacv1.RoleBinding
		convert(t, u, &rb)
		if rb.RoleRef.Name != "gpuslice-arbiter-workloads" || len(rb.Subjects) != 1 ||
			rb.Subjects[0].Name != "gpuslice-arbiter" || rb.Subjects[0].Namespace != "gpu-system" {
			t.Errorf("RoleBinding in %s: %+v", rb.Namespace, rb)
		}
	}
}

// agent.namespace moves the agent, and what reaches it, to its own
// namespace; everything else stays in the release's.
func TestChartAgentNamespace(t *testing.T) {
	r := render(t, Options{Values: values(t, `{agent: {namespace: gpu-agents}, arbiter: {enabled: true, agents: true}, serviceMonitor: {enabled: true}}`)})
	for _, u := range r.Objects() {
		component := u.GetLabels()["app.kubernetes.io/component"]
		if u.GetNamespace() == "" || u.GetKind() == "ServiceMonitor" {
			continue
		}
		agentSide := component == "agent" || u.GetName() == "gpuslice-arbiter-agents"
		if want := map[bool]string{true: "gpu-agents", false: DefaultNamespace}[agentSide]; u.GetNamespace() != want {
			t.Errorf("%s %s in namespace %s, want %s", u.GetKind(), u.GetName(), u.GetNamespace(), want)
		}
	}
	var role rbacv1.Role
	convert(t, r.Find("Role", "gpuslice-arbiter-agents"), &role)
	if got := grants(role.Rules); !reflect.DeepEqual(got, map[string][]string{"/pods/proxy": {"get"}}) {
		t.Errorf("arbiter's Role in the agents' namespace grants %v, want get on pods/proxy", got)
	}
	var main rbacv1.Role
	convert(t, r.Find("Role", "gpuslice-arbiter"), &main)
	if _, ok := grants(main.Rules)["/pods/proxy"]; ok {
		t.Error("the arbiter may still proxy to pods in the release namespace")
	}
	var d appsv1.Deployment
	convert(t, r.Find("Deployment", "gpuslice-arbiter"), &d)
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--agent-namespace=gpu-agents") {
		t.Errorf("arbiter args %v lack --agent-namespace=gpu-agents", d.Spec.Template.Spec.Containers[0].Args)
	}
	sm, _, _ := unstructured.NestedStringSlice(r.Find("ServiceMonitor", "gpuslice-agent").Object, "spec", "namespaceSelector", "matchNames")
	if !slices.Equal(sm, []string{"gpu-agents"}) {
		t.Errorf("agent ServiceMonitor looks in %v, want gpu-agents", sm)
	}
}

// The webhook outlives what it admits: a priority above the workloads',
// and a stopping replica serves on through the preStop delay, then drains
// within the grace period.
func TestChartWebhookOutlivesWorkloads(t *testing.T) {
	var d appsv1.Deployment
	convert(t, render(t, Options{}).Find("Deployment", "gpuslice-webhook"), &d)
	pod := d.Spec.Template.Spec
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName %q, want system-cluster-critical (above Plex's 1,000,000)", pod.PriorityClassName)
	}
	lc := pod.Containers[0].Lifecycle
	if lc == nil || lc.PreStop == nil || lc.PreStop.Sleep == nil || lc.PreStop.Sleep.Seconds != 10 {
		t.Fatalf("preStop %+v, want a 10 s sleep", lc)
	}
	// The preStop sleep, then --shutdown-grace (10 s), within the grace period.
	if g := *pod.TerminationGracePeriodSeconds; g < lc.PreStop.Sleep.Seconds+10 {
		t.Errorf("terminationGracePeriodSeconds %d is shorter than the preStop sleep and the drain", g)
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v may take a replica away before its successor is ready", s)
	}
}

// The agent, which shares the host's PID namespace, runs under a user of
// its own, not the image's 65532 that the webhook, the arbiter and many
// other images use.
func TestChartAgentOwnUser(t *testing.T) {
	r := render(t, Options{Values: values(t, `arbiter: {enabled: true}`)})
	uid := func(kind, name string) int64 {
		u := r.Find(kind, name)
		c, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		var ctr corev1.Container
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(c[0].(map[string]any), &ctr); err != nil {
			t.Fatal(err)
		}
		if ctr.SecurityContext == nil || ctr.SecurityContext.RunAsUser == nil || ctr.SecurityContext.RunAsGroup == nil ||
			*ctr.SecurityContext.RunAsUser != *ctr.SecurityContext.RunAsGroup {
			t.Fatalf("%s %s securityContext %+v", kind, name, ctr.SecurityContext)
		}
		return *ctr.SecurityContext.RunAsUser
	}
	agent := uid("DaemonSet", "gpuslice-agent")
	if agent == 65532 || agent == uid("Deployment", "gpuslice-webhook") || agent == uid("Deployment", "gpuslice-arbiter") {
		t.Errorf("the agent runs as %d, shared with the image's other processes", agent)
	}
}

// networkPolicy.enabled: one policy per component, selecting its pods
// and opening exactly the ports its containers serve; none by default.
func TestChartNetworkPolicies(t *testing.T) {
	if got := render(t, Options{Values: values(t, `arbiter: {enabled: true}`)}).OfKind("NetworkPolicy"); len(got) != 0 {
		t.Errorf("%d NetworkPolicies by default, want none", len(got))
	}
	monitoring := `{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}`
	r := render(t, Options{Values: values(t, `{arbiter: {enabled: true}, agent: {namespace: gpu-agents}, networkPolicy: {enabled: true, metricsFrom: [`+monitoring+`]}}`)})
	for kind, name := range map[string]string{"Deployment/webhook": "gpuslice-webhook", "DaemonSet/agent": "gpuslice-agent", "Deployment/arbiter": "gpuslice-arbiter"} {
		workloadKind, component, _ := strings.Cut(kind, "/")
		u := r.Find(workloadKind, name)
		tmpl, _, _ := unstructured.NestedMap(u.Object, "spec", "template")
		var pod corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
			t.Fatal(err)
		}
		var np networkingv1.NetworkPolicy
		convert(t, r.Find("NetworkPolicy", name), &np)
		if np.Namespace != u.GetNamespace() {
			t.Errorf("%s policy in %s, pods in %s", component, np.Namespace, u.GetNamespace())
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) || sel.Empty() {
			t.Errorf("%s policy selects %v, not its pods %v", component, np.Spec.PodSelector, pod.Labels)
		}
		var served, opened []int32
		for _, p := range pod.Spec.Containers[0].Ports {
			served = append(served, p.ContainerPort)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				opened = append(opened, p.Port.IntVal)
			}
			// Only the metrics-only ports are limited to metricsFrom.
			if len(rule.From) > 0 && (len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil) {
				t.Errorf("%s policy peers %+v, want metricsFrom", component, rule.From)
			}
		}
		slices.Sort(served)
		slices.Sort(opened)
		if !slices.Equal(served, opened) {
			t.Errorf("%s policy opens ports %v, its container serves %v", component, opened, served)
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("%s policy types %v", component, np.Spec.PolicyTypes)
		}
	}
}

// Values the arbiter could not run with stop the install.
func TestChartArbiterRefuses(t *testing.T) {
	tests := []struct{ values, want string }{
		{`arbiter: {enabled: true, plex: {tokenSecret: {name: plex}}}`, "arbiter.plex.url"},
		{`{arbiter: {enabled: true, agents: true}, agent: {enabled: false}}`, "agent.enabled"},
		{`arbiter: {minFreeMemory: 1GB}`, "/arbiter/minFreeMemory"},
		{`arbiter: {holdDown: 5 minutes}`, "/arbiter/holdDown"},
		{`arbiter: {dcgmExporters: ["10.0.0.5:9400"]}`, "/arbiter/dcgmExporters/0"},
		{`arbiter: {prometheusUrl: prometheus:9090}`, "/arbiter/prometheusUrl"},
		{`arbiter: {plex: {workload: plex}}`, "/arbiter/plex/workload"},
		{`arbiter: {timeZone: ""}`, "/arbiter/timeZone"},
		{`arbiter: {replicas: 0}`, "/arbiter/replicas"},
		{`arbiter: {plex: {token: abc}}`, "not allowed"},
		{`arbiter: {workloadNamespaces: {AI: {}}}`, "'AI' does not match pattern"},
		{`arbiter: {workloadNamespaces: {ai: {configMap: [x]}}}`, "not allowed"},
	}
	ch := loadChart(t)
	for _, tt := range tests {
		_, err := Render(ch, Options{Values: values(t, tt.values)})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one naming %s", tt.values, err, tt.want)
		}
	}
}

// grants flattens rules to "group/resource" -> verbs.
func grants(rules []rbacv1.PolicyRule) map[string][]string {
	got := map[string][]string{}
	for _, rule := range rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				got[g+"/"+res] = append(got[g+"/"+res], rule.Verbs...)
			}
		}
	}
	return got
}

// TestChartGoMemLimit: every gpuslice container has a memory limit and
// hands it to the Go runtime as GOMEMLIMIT (through the downward API), so
// a burst collects garbage harder instead of running into an OOM kill.
func TestChartGoMemLimit(t *testing.T) {
	r := render(t, Options{Values: values(t, `arbiter: {enabled: true}`)})
	var specs []corev1.PodSpec
	for _, name := range []string{"gpuslice-webhook", "gpuslice-arbiter"} {
		var d appsv1.Deployment
		convert(t, r.Find("Deployment", name), &d)
		specs = append(specs, d.Spec.Template.Spec)
	}
	var ds appsv1.DaemonSet
	convert(t, r.Find("DaemonSet", "gpuslice-agent"), &ds)
	specs = append(specs, ds.Spec.Template.Spec)
	for _, spec := range specs {
		for _, c := range spec.Containers {
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("container %s has no memory limit", c.Name)
			}
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
			if i < 0 {
				t.Errorf("container %s has no GOMEMLIMIT", c.Name)
				continue
			}
			ref := c.Env[i].ValueFrom
			if ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" || ref.ResourceFieldRef.ContainerName != "" {
				t.Errorf("container %s: GOMEMLIMIT from %s, want its own limits.memory", c.Name, asJSON(t, c.Env[i]))
			}
		}
	}
}
