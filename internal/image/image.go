// Package image builds gpuslice's container images without a container
// engine: a static Go binary in a single layer, with CA certificates and a
// non-root user, written as a tarball that `ctr images import`,
// `k3s ctr images import`, K3s's air-gap images folder and `docker load`
// all read. hack/image builds the image the chart runs; the real-node tests
// build their helper images with the same code.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Source is the repository the OCI labels name.
const Source = "https://github.com/gpuslice/gpuslice"

// NonRootUID is distroless' nonroot user, numeric so that runAsNonRoot can
// verify it.
const NonRootUID = 65532

// OCI label keys the image carries, as `gpuslice version` prints them.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelTitle    = "org.opencontainers.image.title"
)

// versionPkg is where -ldflags -X stamps the version and commit.
const versionPkg = "github.com/gpuslice/gpuslice/internal/version"

// Spec describes one image built from one Go main package.
type Spec struct {
	// Ref is the image's name and tag, e.g. ghcr.io/gpuslice/gpuslice:0.1.0.
	Ref string
	// Dir is the module folder go build runs in; Package the main package.
	Dir, Package string
	// Binary is the path of the binary in the image, also the entrypoint.
	Binary string
	// Links are extra names of the binary (kubectl-gpuslice), as symlinks.
	Links []string
	// Cmd is the default arguments after the entrypoint.
	Cmd []string
	// Version and Commit are stamped into internal/version and the labels.
	Version, Commit string
	// Title is the org.opencontainers.image.title label.
	Title string
	// CACerts is a PEM bundle copied to /etc/ssl/certs/ca-certificates.crt;
	// empty means none.
	CACerts string
	// Root leaves the user as root (the sandbox's pause image needs none,
	// but the kubelet's runAsNonRoot checks only images that say so).
	Root bool
}

// Platform is an OS and architecture, e.g. linux/arm64.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatforms reads a comma-separated list such as
// "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]Platform, error) {
	var out []Platform
	for _, f := range strings.Split(s, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || os == "" || arch == "" {
			return nil, fmt.Errorf("platform %q: want OS/ARCH, e.g. linux/amd64", f)
		}
		out = append(out, Platform{OS: os, Arch: arch})
	}
	return out, nil
}

// HostPlatform is the platform this program runs on.
func HostPlatform() Platform { return Platform{OS: runtime.GOOS, Arch: runtime.GOARCH} }

// Build compiles spec's package for platform (CGO_ENABLED=0: a static
// binary) and returns the image.
func Build(ctx context.Context, spec Spec, p Platform) (v1.Image, error) {
	tmp, err := os.MkdirTemp("", "gpuslice-image-")
	if err != nil {
		return nil, fmt.Errorf("creating a build folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	ldflags := "-s -w"
	if spec.Version != "" {
		ldflags += " -X " + versionPkg + ".Version=" + spec.Version
	}
	if spec.Commit != "" {
		ldflags += " -X " + versionPkg + ".Commit=" + spec.Commit
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+ldflags, "-o", bin, spec.Package)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s for %s in %s: %w\n%s", spec.Package, p, spec.Dir, err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading the built binary: %w", err)
	}
	var ca []byte
	if spec.CACerts != "" {
		if ca, err = os.ReadFile(spec.CACerts); err != nil {
			return nil, fmt.Errorf("reading CA certificates %s (Debian's ca-certificates package provides them): %w", spec.CACerts, err)
		}
	}
	layerTar, err := rootfs(spec, binary, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("adding the image layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Arch
	cfg.Config.Entrypoint = []string{spec.Binary}
	cfg.Config.Cmd = spec.Cmd
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if !spec.Root {
		cfg.Config.User = fmt.Sprintf("%d:%d", NonRootUID, NonRootUID)
	}
	cfg.Config.Labels = map[string]string{
		LabelVersion: spec.Version, LabelRevision: spec.Commit, LabelSource: Source, LabelTitle: spec.Title,
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("setting the image config: %w", err)
	}
	return img, nil
}

// epoch is every file's time, so the same sources give the same image.
var epoch = time.Unix(0, 0)

// rootfs is the layer: the binary, its links, /etc/passwd and /etc/group
// naming the non-root user, CA certificates, and /tmp.
func rootfs(spec Spec, binary, ca []byte) ([]byte, error) {
	files := map[string][]byte{
		spec.Binary:   binary,
		"/etc/passwd": fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID),
		"/etc/group":  fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", NonRootUID),
	}
	if ca != nil {
		files["/etc/ssl/certs/ca-certificates.crt"] = ca
	}
	dirs := map[string]bool{"/tmp": true, "/home/nonroot": true}
	for p := range files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, l := range spec.Links {
		for d := path.Dir(l); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sorted(dirs) {
		mode, uid := int64(0o755), 0
		switch d {
		case "/tmp":
			mode = 0o1777
		case "/home/nonroot":
			uid = NonRootUID
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	names := make(map[string]bool, len(files))
	for p := range files {
		names[p] = true
	}
	for _, p := range sorted(names) {
		mode := int64(0o644)
		if p == spec.Binary {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(files[p])), ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
		if _, err := tw.Write(files[p]); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	for _, l := range spec.Links {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(l, "/"), Linkname: spec.Binary, Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WriteTarball writes img tagged ref as a docker-archive tarball (with
// manifest.json and repositories), the format docker load, ctr images
// import and K3s's air-gap images folder all accept.
func WriteTarball(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

// GpusliceSpec is the image the chart runs, built from the checkout at
// repoRoot.
func GpusliceSpec(repoRoot, version, commit string) Spec {
	return Spec{
		Ref: "ghcr.io/gpuslice/gpuslice:" + version,
		Dir: repoRoot, Package: "./cmd/gpuslice",
		Binary: "/gpuslice", Links: []string{"/usr/local/bin/kubectl-gpuslice", "/usr/local/bin/gpuslice"},
		Version: version, Commit: commit, Title: "gpuslice",
		CACerts: "/etc/ssl/certs/ca-certificates.crt",
	}
}

// ChartVersion reads the chart's appVersion, the image tag the chart runs.
func ChartVersion(repoRoot string) (string, error) {
	p := filepath.Join(repoRoot, "deploy", "helm", "gpuslice", "Chart.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading the chart's appVersion: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"'`), nil
		}
	}
	return "", fmt.Errorf("%s has no appVersion", p)
}

// GitCommit is the checkout's HEAD, or "unknown" outside a git checkout.
func GitCommit(ctx context.Context, repoRoot string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
