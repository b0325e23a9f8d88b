package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// TestBuildImage builds a small image with the code that builds
// gpuslice's and checks what docker load and containerd read from it.
func TestBuildImage(t *testing.T) {
	root := repoRoot(t)
	version, err := ChartVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	spec := GpusliceSpec(root, version, "0123abc")
	// The testbox is quick to build; the layout and config are the same code.
	spec.Package = "./internal/harness/testbox"
	img, err := Build(context.Background(), spec, HostPlatform())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want the numeric non-root 65532:65532", cfg.Config.User)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/gpuslice" {
		t.Errorf("entrypoint %v, want [/gpuslice]", cfg.Config.Entrypoint)
	}
	for k, want := range map[string]string{LabelVersion: version, LabelRevision: "0123abc", LabelSource: Source} {
		if got := cfg.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if cfg.OS != HostPlatform().OS || cfg.Architecture != HostPlatform().Arch {
		t.Errorf("platform %s/%s, want %s", cfg.OS, cfg.Architecture, HostPlatform())
	}
	files := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files["/"+h.Name] = h
	}
	if h := files["/gpuslice"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("no executable /gpuslice in the image: %v", h)
	}
	if h := files["/usr/local/bin/kubectl-gpuslice"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/gpuslice" {
		t.Errorf("/usr/local/bin/kubectl-gpuslice is not a link to /gpuslice: %v", h)
	}
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group", "/tmp"} {
		if files[f] == nil {
			t.Errorf("the image lacks %s", f)
		}
	}

	// docker load reads manifest.json; ctr images import and K3s too.
	file := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteTarball(file, spec.Ref, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr = tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("the tarball has no manifest.json: %v", err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != spec.Ref {
			t.Errorf("manifest.json %+v, want one image tagged %s", m, spec.Ref)
		}
		break
	}
}

func TestParsePlatforms(t *testing.T) {
	ps, err := ParsePlatforms("linux/amd64, linux/arm64")
	if err != nil || len(ps) != 2 || ps[1] != (Platform{"linux", "arm64"}) {
		t.Errorf("ParsePlatforms: %v %v", ps, err)
	}
	if _, err := ParsePlatforms("amd64"); err == nil {
		t.Error("ParsePlatforms(amd64): no error")
	}
}
