// Package image builds gpuslice's container images without a container
// engine: a Go binary in a single layer, with CA certificates and a
// non-root user (static, or a cgo build carrying glibc from Debian's
// packages; see Spec.Glibc), written as a tarball that `ctr images
// import`, `k3s ctr images import`, K3s's air-gap images folder and
// `docker load` all read. hack/image builds the image the chart runs; the real-node tests
// build their helper images with the same code.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
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
	// Also are more programs built the same way and put beside Binary
	// (gpuslice-agent), run by naming them as the container's command.
	Also []Program
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
	// Glibc builds with cgo, dynamically linked against glibc, and puts
	// glibc's loader and libraries from Debian's packages in the layer:
	// the agent dlopens NVML (libnvidia-ml.so.1, which the NVIDIA
	// container toolkit mounts from the host and which needs glibc). Off,
	// the binary is static (CGO_ENABLED=0) and the layer has no libraries.
	Glibc bool
}

// Program is one more main package of an image and its path there.
type Program struct{ Package, Binary string }

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

// Build compiles spec's packages for platform and returns the image:
// static binaries (CGO_ENABLED=0), or with spec.Glibc cgo builds with
// glibc's runtime files beside them.
func Build(ctx context.Context, spec Spec, p Platform) (v1.Image, error) {
	tmp, err := os.MkdirTemp("", "gpuslice-image-")
	if err != nil {
		return nil, fmt.Errorf("creating a build folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	var libc *glibcLayout
	if spec.Glibc {
		if libc, err = glibcFor(p); err != nil {
			return nil, err
		}
	}
	programs := append([]Program{{Package: spec.Package, Binary: spec.Binary}}, spec.Also...)
	binaries := make([][]byte, len(programs))
	var extra []layerFile
	for i, prog := range programs {
		if binaries[i], err = compile(ctx, spec, p, libc, prog.Package, filepath.Join(tmp, fmt.Sprint("bin", i))); err != nil {
			return nil, err
		}
		if libc == nil {
			continue
		}
		// Every binary is checked against the glibc files; they go in once.
		files, err := libc.files(binaries[i])
		if err != nil {
			return nil, err
		}
		if i == 0 {
			extra = files
		}
	}
	for i, prog := range spec.Also {
		extra = append(extra, layerFile{Path: prog.Binary, Data: binaries[i+1], Mode: 0o755})
	}
	binary := binaries[0]
	var ca []byte
	if spec.CACerts != "" {
		if ca, err = os.ReadFile(spec.CACerts); err != nil {
			return nil, fmt.Errorf("reading CA certificates %s (Debian's ca-certificates package provides them): %w", spec.CACerts, err)
		}
	}
	layerTar, err := rootfs(spec, binary, ca, extra)
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

// compile builds pkg for platform p into out and reads the binary: static
// (CGO_ENABLED=0), or with libc a cgo build against glibc.
func compile(ctx context.Context, spec Spec, p Platform, libc *glibcLayout, pkg, out string) ([]byte, error) {
	ldflags := "-s -w"
	if spec.Version != "" {
		ldflags += " -X " + versionPkg + ".Version=" + spec.Version
	}
	if spec.Commit != "" {
		ldflags += " -X " + versionPkg + ".Commit=" + spec.Commit
	}
	args := []string{"build", "-trimpath", "-ldflags=" + ldflags}
	env := append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Arch)
	if libc != nil {
		// cgo only for NVML: the pure-Go resolver and user lookup keep
		// DNS as it was in the static build and need no NSS files.
		args = append(args, "-tags=netgo,osusergo")
		env = append(env, "CGO_ENABLED=1", "CC="+libc.cc)
	} else {
		env = append(env, "CGO_ENABLED=0")
	}
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = spec.Dir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s for %s in %s: %w\n%s", pkg, p, spec.Dir, err, out)
	}
	binary, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("reading the built binary: %w", err)
	}
	return binary, nil
}

// epoch is every file's time, so the same sources give the same image.
var epoch = time.Unix(0, 0)

// layerFile is a file or, with Link set, a symlink in the layer.
type layerFile struct {
	Path, Link string
	Data       []byte
	Mode       int64
}

// rootfs is the layer: the binary, its links, /etc/passwd and /etc/group
// naming the non-root user, CA certificates, /tmp, and extra (glibc).
func rootfs(spec Spec, binary, ca []byte, extra []layerFile) ([]byte, error) {
	entries := []layerFile{
		{Path: spec.Binary, Data: binary, Mode: 0o755},
		{Path: "/etc/passwd", Data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID), Mode: 0o644},
		{Path: "/etc/group", Data: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", NonRootUID), Mode: 0o644},
	}
	if ca != nil {
		entries = append(entries, layerFile{Path: "/etc/ssl/certs/ca-certificates.crt", Data: ca, Mode: 0o644})
	}
	for _, l := range spec.Links {
		entries = append(entries, layerFile{Path: l, Link: spec.Binary})
	}
	entries = append(entries, extra...)
	dirs := map[string]bool{"/tmp": true, "/home/nonroot": true}
	byPath := make(map[string]layerFile, len(entries))
	for _, e := range entries {
		if _, dup := byPath[e.Path]; dup {
			return nil, fmt.Errorf("the layer has %s twice", e.Path)
		}
		byPath[e.Path] = e
		for d := path.Dir(e.Path); d != "/"; d = path.Dir(d) {
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
	names := make(map[string]bool, len(byPath))
	for p := range byPath {
		names[p] = true
	}
	for _, p := range sorted(names) {
		e := byPath[p]
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: e.Mode, Size: int64(len(e.Data)), ModTime: epoch}
		if e.Link != "" {
			h = &tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: e.Link, Mode: 0o777, ModTime: epoch}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, fmt.Errorf("writing the layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// glibcLayout is where one architecture's C compiler and glibc files are
// on this (Debian) machine, and where they go in the image.
type glibcLayout struct {
	arch string
	// cc compiles cgo; ccPkg is the Debian package that has it.
	cc, ccPkg string
	// srcDir holds the libraries on this machine; libcPkg ships them.
	srcDir, libcPkg string
	// libDir is the libraries' folder in the image, loader the binary's
	// interpreter (PT_INTERP) and loaderFile its real file in libDir.
	libDir, loader, loaderFile string
}

// glibcLibs are the libraries put in the image: libc, and the small
// compatibility libraries glibc 2.34+ keeps (empty since libc absorbed
// them) that NVML from older drivers still names as DT_NEEDED.
var glibcLibs = []string{"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1"}

// glibcFor is p's layout: Debian's libc6 for the machine's own
// architecture, its libc6-ARCH-cross package and cross compiler otherwise.
func glibcFor(p Platform) (*glibcLayout, error) {
	if p.OS != "linux" {
		return nil, fmt.Errorf("a glibc image for %s: only linux has glibc", p)
	}
	var l glibcLayout
	switch p.Arch {
	case "amd64":
		l = glibcLayout{arch: p.Arch, libDir: "/lib/x86_64-linux-gnu", loader: "/lib64/ld-linux-x86-64.so.2", loaderFile: "ld-linux-x86-64.so.2"}
	case "arm64":
		l = glibcLayout{arch: p.Arch, libDir: "/lib/aarch64-linux-gnu", loader: "/lib/ld-linux-aarch64.so.1", loaderFile: "ld-linux-aarch64.so.1"}
	default:
		return nil, fmt.Errorf("a glibc image for %s: only linux/amd64 and linux/arm64 are laid out; build it for one of them", p)
	}
	triplet := path.Base(l.libDir)
	if p.Arch == runtime.GOARCH {
		l.cc, l.ccPkg = "gcc", "gcc"
		l.srcDir, l.libcPkg = l.libDir, "libc6"
	} else {
		l.cc, l.ccPkg = triplet+"-gcc", "gcc-"+triplet
		l.srcDir, l.libcPkg = "/usr/"+triplet+"/lib", "libc6-"+p.Arch+"-cross"
	}
	if _, err := exec.LookPath(l.cc); err != nil {
		return nil, fmt.Errorf("the %s image is a cgo build and needs the C compiler %s, which is not on PATH: install Debian's %s package (apt-get install -y %s)", p, l.cc, l.ccPkg, l.ccPkg)
	}
	return &l, nil
}

// files are glibc's loader and libraries for the layer, real files read
// from this machine (symlinks followed), the loader also linked from the
// path the binary names. It fails if the binary needs a library or an
// interpreter the layout lacks.
func (l *glibcLayout) files(binary []byte) ([]layerFile, error) {
	interp, needed, err := dynamicDeps(binary)
	if err != nil {
		return nil, err
	}
	if interp != l.loader {
		return nil, fmt.Errorf("the %s binary's interpreter is %q, want %s: is it a cgo build linked against glibc?", l.arch, interp, l.loader)
	}
	have := map[string]bool{}
	var out []layerFile
	for _, name := range append([]string{l.loaderFile}, glibcLibs...) {
		src := filepath.Join(l.srcDir, name)
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading glibc's %s for the %s image: %w; install Debian's %s package (apt-get install -y %s)", name, l.arch, err, l.libcPkg, l.libcPkg)
		}
		out = append(out, layerFile{Path: path.Join(l.libDir, name), Data: data, Mode: 0o755})
		have[name] = true
	}
	if l.loader != path.Join(l.libDir, l.loaderFile) {
		out = append(out, layerFile{Path: l.loader, Link: path.Join(l.libDir, l.loaderFile)})
	}
	for _, n := range needed {
		if !have[n] {
			return nil, fmt.Errorf("the %s binary needs %s, which the image's glibc files lack: add it to glibcLibs in internal/image", l.arch, n)
		}
	}
	return out, nil
}

// dynamicDeps reads an ELF binary's interpreter and DT_NEEDED libraries;
// both are empty for a static binary.
func dynamicDeps(binary []byte) (interp string, needed []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return "", nil, fmt.Errorf("reading the built binary as ELF: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", nil, fmt.Errorf("reading the binary's interpreter: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, fmt.Errorf("reading the binary's libraries: %w", err)
	}
	return interp, needed, nil
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

// AgentBinary is the node agent's path in the gpuslice image, the
// DaemonSet's command.
const AgentBinary = "/gpuslice-agent"

// GpusliceSpec is the image the chart runs, built from the checkout at
// repoRoot.
func GpusliceSpec(repoRoot, version, commit string) Spec {
	return Spec{
		Ref: "ghcr.io/gpuslice/gpuslice:" + version,
		Dir: repoRoot, Package: "./cmd/gpuslice",
		Binary: "/gpuslice", Links: []string{"/usr/local/bin/kubectl-gpuslice", "/usr/local/bin/gpuslice"},
		Also:    []Program{{Package: "./cmd/gpuslice-agent", Binary: AgentBinary}},
		Version: version, Commit: commit, Title: "gpuslice",
		CACerts: "/etc/ssl/certs/ca-certificates.crt",
		Glibc:   true,
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
