package image

import (
	"archive/tar"
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
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
	// The testbox is quick to build; the layout and config are the same
	// code. Static here, as the real-node tests' images; TestGlibcImage
	// builds gpuslice itself with glibc.
	spec.Package = "./internal/harness/testbox"
	spec.Glibc = false
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

// TestGlibcImage builds the gpuslice image for this machine and checks
// that its cgo binary can load in it: the interpreter and every DT_NEEDED
// library are in the image. As root it also runs the binary in the
// extracted image with chroot, so only the image's loader and libc serve
// it, and runs the agent against the stand-in NVML placed where the
// NVIDIA container toolkit mounts the host's.
func TestGlibcImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gpuslice with cgo; skipped with -short")
	}
	root := repoRoot(t)
	version, err := ChartVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	p := HostPlatform()
	layout, err := glibcFor(p)
	if err != nil {
		t.Skipf("no glibc image on this machine: %v", err)
	}
	img, err := Build(context.Background(), GpusliceSpec(root, version, "0123abc"), p)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := extract(rc, rootfs); err != nil {
		t.Fatal(err)
	}

	for _, bin := range []string{"/gpuslice", AgentBinary} {
		checkGlibcBinary(t, rootfs, bin, layout.libDir)
	}

	if os.Getuid() != 0 {
		t.Skip("chroot into the image needs root; the ELF checks passed")
	}
	user := fmt.Sprintf("--userspec=%d:%d", NonRootUID, NonRootUID)
	out, err := exec.Command("chroot", user, rootfs, "/gpuslice", "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "version: "+version) {
		t.Fatalf("chroot %s /gpuslice version (only the image's loader and libc): %v\n%s", rootfs, err, out)
	}

	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the stand-in NVML (apt-get install -y gcc); the binary runs in the image")
	}
	// Where the NVIDIA container toolkit mounts the host's library, found
	// by the loader's default path as the agent's default --nvml-library.
	lib := filepath.Join(rootfs, "usr", layout.libDir, "libnvidia-ml.so.1")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nvmltest.Build(context.Background(), lib, ""); err != nil {
		t.Fatal(err)
	}
	kubeconfig := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:1\"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "kubeconfig"), []byte(kubeconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agent := exec.CommandContext(ctx, "chroot", user, rootfs, AgentBinary, "--node-name", "n1", "--kubeconfig", "/tmp/kubeconfig", "--listen-address", "127.0.0.1:0")
	stderr, err := agent.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	// The agent logs "agent serving" once NVML was tried, saying whether
	// it loaded; the log is the signal, no waiting on a clock.
	var log []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log = append(log, sc.Text())
		if strings.Contains(sc.Text(), `"agent serving"`) {
			if !strings.Contains(sc.Text(), `"nvmlAvailable":true`) {
				t.Errorf("the agent in the image did not load the stand-in NVML from %s:\n%s", lib, strings.Join(log, "\n"))
			}
			return
		}
	}
	t.Errorf("the agent in the image exited before serving:\n%s", strings.Join(log, "\n"))
}

// extract writes a flattened image filesystem under dir.
func extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			mode := os.FileMode(h.Mode).Perm()
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky // /tmp
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// resolve follows p's symlinks inside rootfs (absolute links relative to
// rootfs, as the loader in the container sees them) to a regular file.
func resolve(rootfs, p string) (string, error) {
	for range 16 {
		fi, err := os.Lstat(filepath.Join(rootfs, p))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if !fi.Mode().IsRegular() {
				return "", fmt.Errorf("%s is not a regular file", p)
			}
			return p, nil
		}
		target, err := os.Readlink(filepath.Join(rootfs, p))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
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

func TestGlibcForSaysWhatIsMissing(t *testing.T) {
	if _, err := glibcFor(Platform{"linux", "riscv64"}); err == nil || !strings.Contains(err.Error(), "linux/amd64 and linux/arm64") {
		t.Errorf("glibcFor(linux/riscv64) = %v, want an error naming the laid-out platforms", err)
	}
	l := &glibcLayout{arch: "arm64", srcDir: t.TempDir(), libcPkg: "libc6-arm64-cross", libDir: "/lib/aarch64-linux-gnu", loader: "/lib/ld-linux-aarch64.so.1", loaderFile: "ld-linux-aarch64.so.1"}
	if _, err := l.files(nil); err == nil {
		t.Error("files(not an ELF binary): no error")
	}
	// This test binary is an ELF for this machine; its loader is not
	// arm64's, and the error says so.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	if _, err := l.files(self); err == nil || !strings.Contains(err.Error(), "interpreter") {
		t.Errorf("files(a non-arm64 binary) = %v, want an error about the interpreter", err)
	}
}

// checkGlibcBinary checks that bin in rootfs is linked against glibc and
// that its interpreter and libraries are in the image.
func checkGlibcBinary(t *testing.T, rootfs, bin, libDir string) {
	t.Helper()
	f, err := elf.Open(filepath.Join(rootfs, bin))
	if err != nil {
		t.Fatalf("the image's %s: %v", bin, err)
	}
	defer f.Close()
	var interp string
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				t.Fatal(err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		t.Fatalf("%s has no interpreter: a static binary cannot dlopen NVML (glibc)", bin)
	}
	if _, err := resolve(rootfs, interp); err != nil {
		t.Errorf("the interpreter %s is not in the image: %v", interp, err)
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(needed) == 0 {
		t.Errorf("%s needs no library: not linked against glibc", bin)
	}
	for _, lib := range needed {
		found := false
		// The loader's default search path, without an ld.so.cache.
		for _, dir := range []string{libDir, "/usr" + libDir, "/lib", "/usr/lib"} {
			if _, err := resolve(rootfs, path.Join(dir, lib)); err == nil {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s needs %s, which is not on the loader's path in the image", bin, lib)
		}
	}
}
