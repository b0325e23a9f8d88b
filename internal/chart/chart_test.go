package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

func testRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot(wd)
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
			if cms := r.OfKind("ConfigMap"); len(cms) > 0 {
				var cm corev1.ConfigMap
				convert(t, cms[0], &cm)
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
