// Package krew holds the krew plugin manifest of kubectl-gpuslice
// (gpuslice.yaml, a krew-release-bot template); its test renders the
// template as the bot does and checks the manifest krew-index would get.
package krew

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"
)

// plugin is krew's index.Plugin (krew.googlecontainertools.github.com/v1alpha2),
// the fields a manifest may carry; strict decoding refuses any other.
type plugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string     `json:"version"`
		Homepage         string     `json:"homepage"`
		ShortDescription string     `json:"shortDescription"`
		Description      string     `json:"description"`
		Caveats          string     `json:"caveats"`
		Platforms        []platform `json:"platforms"`
	} `json:"spec"`
}

type platform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string `json:"uri"`
	Sha256 string `json:"sha256"`
	Bin    string `json:"bin"`
	Files  []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"files"`
}

// render does what krew-release-bot does with the template on tag.
func render(t *testing.T, tmpl []byte, tag string) []byte {
	t.Helper()
	funcs := template.FuncMap{"addURIAndSha": func(uri, tag string) (string, error) {
		var b strings.Builder
		if err := template.Must(template.New("uri").Parse(uri)).Execute(&b, map[string]string{"TagName": tag}); err != nil {
			return "", err
		}
		// The bot downloads the archive and writes its digest here.
		return fmt.Sprintf("uri: %s\n    sha256: %x", b.String(), sha256.Sum256([]byte(b.String()))), nil
	}}
	tp, err := template.New("gpuslice.yaml").Funcs(funcs).Parse(string(tmpl))
	if err != nil {
		t.Fatalf("gpuslice.yaml is not a krew-release-bot template: %v", err)
	}
	var out bytes.Buffer
	if err := tp.Execute(&out, map[string]string{"TagName": tag}); err != nil {
		t.Fatalf("rendering gpuslice.yaml: %v", err)
	}
	return out.Bytes()
}

func TestManifest(t *testing.T) {
	tmpl, err := os.ReadFile("gpuslice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const tag = "v1.2.3"
	var p plugin
	if err := yaml.UnmarshalStrict(render(t, tmpl, tag), &p); err != nil {
		t.Fatalf("rendered manifest: %v", err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" {
		t.Errorf("apiVersion %q kind %q, want krew's v1alpha2 Plugin", p.APIVersion, p.Kind)
	}
	// kubectl runs kubectl-NAME for `kubectl NAME`.
	const binary = "kubectl-gpuslice"
	if p.Metadata.Name != "gpuslice" {
		t.Errorf("name %q, want gpuslice (the file's name, and kubectl gpuslice)", p.Metadata.Name)
	}
	if p.Spec.Version != tag {
		t.Errorf("version %q, want the tag %s", p.Spec.Version, tag)
	}
	if p.Spec.ShortDescription == "" || len(p.Spec.ShortDescription) > 50 || p.Spec.Description == "" || !strings.HasPrefix(p.Spec.Homepage, "https://") {
		t.Errorf("krew-index wants a homepage, a short description (at most 50 characters) and a description: %q %q", p.Spec.Homepage, p.Spec.ShortDescription)
	}
	want := map[string]bool{"linux/amd64": true, "linux/arm64": true, "darwin/amd64": true, "darwin/arm64": true}
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i, pl := range p.Spec.Platforms {
		osArch := pl.Selector.MatchLabels["os"] + "/" + pl.Selector.MatchLabels["arch"]
		if !want[osArch] {
			t.Errorf("platform %d: %s is not one gpuslice releases, or is listed twice", i, osArch)
		}
		delete(want, osArch)
		archive := fmt.Sprintf("/%s/%s_%s_%s.tar.gz", tag, binary, tag, strings.ReplaceAll(osArch, "/", "_"))
		if !strings.HasPrefix(pl.URI, "https://") || !strings.HasSuffix(pl.URI, archive) {
			t.Errorf("platform %s: uri %q, want the release's archive ending %s", osArch, pl.URI, archive)
		}
		if !sha.MatchString(pl.Sha256) {
			t.Errorf("platform %s: sha256 %q is not a digest", osArch, pl.Sha256)
		}
		installed := false
		for _, f := range pl.Files {
			installed = installed || f.From == binary
		}
		if pl.Bin != binary || !installed {
			t.Errorf("platform %s: bin %q from files %+v, want %s installed from the archive", osArch, pl.Bin, pl.Files, binary)
		}
	}
	for osArch := range want {
		t.Errorf("no platform for %s", osArch)
	}
}
