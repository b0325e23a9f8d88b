// Package chart renders gpuslice's Helm chart (deploy/helm/gpuslice) with
// Helm's own library, as `helm template` would: for the tests, and for
// hack/render-manifests, which writes the plain manifests in deploy/manifests.
package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
)

// Where things are in the repository.
const (
	Dir          = "deploy/helm/gpuslice"
	ManifestFile = "deploy/manifests/gpuslice.yaml"
	// DashboardFile is a copy of the chart's dashboards/gpuslice.json, for
	// importing into Grafana by hand.
	DashboardFile  = "deploy/grafana/gpuslice.json"
	chartDashboard = "dashboards/gpuslice.json"
	// HelmChartFile is K3s's HelmChart for the chart, with the chart inside
	// (chartContent): K3s installs it from its server's manifests folder.
	HelmChartFile = "deploy/k3s/gpuslice.yaml"
)

// Defaults of a rendering, as in docs/install.md.
const (
	DefaultRelease   = "gpuslice"
	DefaultNamespace = "gpu-system"
)

// ManifestOrder is Helm's install order with the MutatingWebhookConfiguration
// (a kind Helm does not know, so it comes last) before the Services and
// workloads: a self-signed webhook replica writes its CA into it on start
// and must find it. Registering first blocks nothing: only annotated pods
// outside the webhook's namespace are ever sent.
var ManifestOrder = func() releaseutil.KindSortOrder {
	order := slices.Clone(releaseutil.InstallOrder)
	i := slices.Index(order, "Service")
	return slices.Insert(order, i, "MutatingWebhookConfiguration")
}()

// RepoRoot walks up from dir (relative to the working directory, such as
// ".", or absolute) to the checkout that holds the chart.
func RepoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the checkout above %s: %w", dir, err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, Dir, "Chart.yaml")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no gpuslice checkout (%s/Chart.yaml) above %s; run from the repository", Dir, dir)
		}
	}
}

// Load reads the chart from a checkout.
func Load(root string) (*helmchart.Chart, error) {
	ch, err := loader.Load(filepath.Join(root, Dir))
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", Dir, err)
	}
	return ch, nil
}

// Options of one rendering.
type Options struct {
	// Release and Namespace default to DefaultRelease and DefaultNamespace.
	Release, Namespace string
	// Values are merged over the chart's values.yaml, as `helm --values`.
	Values map[string]any
	// Plain renders for kubectl apply: Release.Service "kubectl", so the
	// objects claim no Helm ownership.
	Plain bool
}

func (o Options) withDefaults() Options {
	if o.Release == "" {
		o.Release = DefaultRelease
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	return o
}

// Capabilities are those of the local control plane's version.
func Capabilities() (*chartutil.Capabilities, error) {
	kv, err := chartutil.ParseKubeVersion(localcluster.KubernetesVersion)
	if err != nil {
		return nil, fmt.Errorf("parsing Kubernetes version %s: %w", localcluster.KubernetesVersion, err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps, nil
}

// Manifest is one rendered object: its template, its YAML and the object.
type Manifest struct {
	Template string
	YAML     string
	Object   *unstructured.Unstructured
}

// Rendered is a chart's output in ManifestOrder.
type Rendered struct {
	Manifests []Manifest
}

// Render renders the chart: values checked against values.schema.json,
// the chart's kubeVersion against Capabilities, templates by Helm's engine.
func Render(ch *helmchart.Chart, o Options) (*Rendered, error) {
	o = o.withDefaults()
	caps, err := Capabilities()
	if err != nil {
		return nil, err
	}
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, which %s does not satisfy", kv, caps.KubeVersion.String())
	}
	vals, err := chartutil.ToRenderValues(ch, o.Values, chartutil.ReleaseOptions{
		Name: o.Release, Namespace: o.Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	if o.Plain {
		vals["Release"].(map[string]any)["Service"] = "kubectl"
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering chart: %w", err)
	}
	// NOTES.txt is for people, not the API server.
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, ManifestOrder)
	if err != nil {
		return nil, fmt.Errorf("splitting rendered manifests: %w", err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart has %d hook(s) (%s); plain manifests could not reproduce them", len(hooks), hooks[0].Path)
	}
	r := &Rendered{}
	for _, m := range manifests {
		if m.Head == nil || m.Head.Kind == "" {
			continue // comments only
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(m.Content), &obj.Object); err != nil {
			return nil, fmt.Errorf("%s: rendered YAML does not parse: %w\n%s", m.Name, err, m.Content)
		}
		r.Manifests = append(r.Manifests, Manifest{Template: m.Name, YAML: m.Content, Object: obj})
	}
	return r, nil
}

// Objects returns the rendered objects in order.
func (r *Rendered) Objects() []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(r.Manifests))
	for i, m := range r.Manifests {
		out[i] = m.Object
	}
	return out
}

// Find returns the object of a kind and name, or nil.
func (r *Rendered) Find(kind, name string) *unstructured.Unstructured {
	for _, m := range r.Manifests {
		if m.Object.GetKind() == kind && m.Object.GetName() == name {
			return m.Object
		}
	}
	return nil
}

// OfKind returns the objects of a kind.
func (r *Rendered) OfKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, m := range r.Manifests {
		if m.Object.GetKind() == kind {
			out = append(out, m.Object)
		}
	}
	return out
}

// YAML writes the manifests as one stream, each under its template's name,
// as `helm template` does.
func (r *Rendered) YAML() []byte {
	var b bytes.Buffer
	for _, m := range r.Manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Template, m.YAML)
	}
	return b.Bytes()
}

// ParseValues reads values as YAML, as from a values file.
func ParseValues(s string) (map[string]any, error) {
	v, err := chartutil.ReadValues([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("values %q: %w", s, err)
	}
	return v.AsMap(), nil
}

// Lint runs `helm lint`'s rules with these values; warnings count as
// errors.
func Lint(root string, o Options) error {
	o = o.withDefaults()
	caps, err := Capabilities()
	if err != nil {
		return err
	}
	res := lint.AllWithKubeVersion(filepath.Join(root, Dir), o.Values, o.Namespace, &caps.KubeVersion)
	var errs []error
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, m)
		}
	}
	return errors.Join(errs...)
}

// LeafPaths lists the dotted paths of a values tree's leaves (scalars,
// lists and empty maps), sorted.
func LeafPaths(v map[string]any) []string {
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, val := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if sub, ok := val.(map[string]any); ok && len(sub) > 0 {
				walk(p, sub)
				continue
			}
			out = append(out, p)
		}
	}
	walk("", v)
	slices.Sort(out)
	return out
}

// namespaceYAML is the namespace the plain manifests install into; Helm
// users pass --create-namespace instead.
const namespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: ` + DefaultNamespace + `
  labels:
    app.kubernetes.io/part-of: gpuslice
    # The agent mounts the host's /proc (a hostPath volume): Pod Security
    # admission must allow privileged pods here if it is enforced.
    pod-security.kubernetes.io/enforce: privileged
`

const manifestHeader = `# gpuslice: the webhook, the agent and their RBAC in namespace ` + DefaultNamespace + `.
# Generated from ` + Dir + ` with its default values by
#   go run ./hack/render-manifests
# Do not edit: change the chart and regenerate. Install with
#   kubectl apply -f deploy/manifests/
`

const helmChartHeader = `# gpuslice for K3s: the chart (deploy/helm/gpuslice, packaged into
# chartContent) as a helm.cattle.io/v1 HelmChart, installed into namespace ` + DefaultNamespace + `
# with its default values. Generated by
#   go run ./hack/render-manifests
# Do not edit: change the chart and regenerate. Copy it to the server's
#   /var/lib/rancher/k3s/server/manifests/
# and K3s's Helm controller installs it; set values in spec.valuesContent.
`

// Archive packs a loaded chart as `helm package` would lay it out
// (NAME/...), byte for byte the same on every run: files sorted, no
// timestamps, owners or modes of this checkout.
func Archive(ch *helmchart.Chart) ([]byte, error) {
	files := slices.Clone(ch.Raw)
	slices.SortFunc(files, func(a, b *helmchart.File) int { return strings.Compare(a.Name, b.Name) })
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		hdr := &tar.Header{Name: ch.Name() + "/" + f.Name, Mode: 0o644, Size: int64(len(f.Data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("packing %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// helmChartYAML is the K3s HelmChart: the namespace (with the Pod Security
// label the agent needs), then the HelmChart carrying the chart.
func helmChartYAML(ch *helmchart.Chart) ([]byte, error) {
	archive, err := Archive(ch)
	if err != nil {
		return nil, err
	}
	hc := map[string]any{
		"apiVersion": "helm.cattle.io/v1",
		"kind":       "HelmChart",
		"metadata":   map[string]any{"name": DefaultRelease, "namespace": "kube-system"},
		"spec": map[string]any{
			"targetNamespace": DefaultNamespace,
			"chartContent":    base64.StdEncoding.EncodeToString(archive),
		},
	}
	data, err := yaml.Marshal(hc)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(helmChartHeader)
	fmt.Fprintf(&b, "---\n%s---\n%s", namespaceYAML, data)
	return b.Bytes(), nil
}

// Generated returns the files hack/render-manifests writes, by path from
// the repository root.
func Generated(root string) (map[string][]byte, error) {
	ch, err := Load(root)
	if err != nil {
		return nil, err
	}
	r, err := Render(ch, Options{Plain: true})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(manifestHeader)
	fmt.Fprintf(&b, "---\n%s", namespaceYAML)
	b.Write(r.YAML())
	dashboard, err := os.ReadFile(filepath.Join(root, Dir, chartDashboard))
	if err != nil {
		return nil, fmt.Errorf("reading the chart's dashboard: %w", err)
	}
	helmChart, err := helmChartYAML(ch)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{ManifestFile: b.Bytes(), DashboardFile: dashboard, HelmChartFile: helmChart}, nil
}
