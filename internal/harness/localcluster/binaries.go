package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// KubernetesVersion is the control plane's version, pinned by the tools
// module in hack/controlplane.
const KubernetesVersion = "v1.36.3"

// Binary names, as envtest expects them in KUBEBUILDER_ASSETS.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeScheduler         = "kube-scheduler"
	KubeControllerManager = "kube-controller-manager"
)

// buildTargets maps each binary to its package in the tools module.
var buildTargets = []buildTarget{
	{Etcd, "./etcd"},
	{KubeAPIServer, "k8s.io/kubernetes/cmd/kube-apiserver"},
	{KubeScheduler, "k8s.io/kubernetes/cmd/kube-scheduler"},
	{KubeControllerManager, "k8s.io/kubernetes/cmd/kube-controller-manager"},
}

// ErrNoBinaries means the control-plane binaries are neither in
// KUBEBUILDER_ASSETS nor buildable from a gpuslice checkout.
var ErrNoBinaries = errors.New("control-plane binaries not found")

// FindRepoRoot walks up from dir to the gpuslice checkout that holds the
// tools module.
func FindRepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "hack", "controlplane", "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%w: no gpuslice checkout (hack/controlplane/go.mod) above %s; run from the repository or set KUBEBUILDER_ASSETS to a folder holding %s, %s, %s and %s",
				ErrNoBinaries, dir, Etcd, KubeAPIServer, KubeScheduler, KubeControllerManager)
		}
	}
}

// RepoRoot is the checkout above the working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	return FindRepoRoot(wd)
}

// CacheDir is where a checkout keeps its built binaries (git-ignored).
func CacheDir(repoRoot string) string {
	return filepath.Join(repoRoot, ".cache", "controlplane", KubernetesVersion)
}

// FindBinaries returns a folder holding all four binaries: KUBEBUILDER_ASSETS
// when set, else the checkout's cache. It builds nothing.
func FindBinaries() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if missing := missingBinaries(dir); len(missing) > 0 {
			return "", fmt.Errorf("%w: KUBEBUILDER_ASSETS=%s lacks %v; unset it to use the checkout's cache, or run hack/build-controlplane.sh", ErrNoBinaries, dir, missing)
		}
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := CacheDir(root)
	if missing := missingBinaries(dir); len(missing) > 0 {
		return "", fmt.Errorf("%w: %s lacks %v; build them with hack/build-controlplane.sh (about 8 minutes the first time)", ErrNoBinaries, dir, missing)
	}
	return dir, nil
}

// EnsureBinaries finds the binaries, building any that are missing from the
// checkout's tools module. Progress lines go to progress. Concurrent callers
// (test packages run in parallel) wait on a file lock instead of building
// twice.
func EnsureBinaries(ctx context.Context, progress io.Writer) (string, error) {
	dir, err := FindBinaries()
	if err == nil || os.Getenv("KUBEBUILDER_ASSETS") != "" {
		return dir, err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return BuildBinaries(ctx, root, progress)
}

// BuildBinaries builds whichever binaries the checkout's cache lacks.
func BuildBinaries(ctx context.Context, repoRoot string, progress io.Writer) (string, error) {
	dir := CacheDir(repoRoot)
	if err := buildSet(ctx, repoRoot, controlPlaneSet(dir), progress); err != nil {
		return "", err
	}
	return dir, nil
}

// binarySet is the binaries one tools module builds into one cache folder,
// under one lock.
type binarySet struct {
	what    string // progress lines' prefix, e.g. "control plane"
	version string
	dir     string // cache folder
	module  string // tools module, relative to the repository root
	cgo     bool
	tags    string
	// prereq, when set, checks what the build needs from the host and
	// says how to install it.
	prereq  func() error
	targets []buildTarget
}

type buildTarget struct{ name, pkg string }

func controlPlaneSet(dir string) binarySet {
	return binarySet{what: "control plane", version: KubernetesVersion, dir: dir, module: "hack/controlplane", cgo: true, targets: buildTargets}
}

// buildSet builds whichever of set's binaries its folder lacks. Concurrent
// callers wait on the folder's lock instead of building twice.
func buildSet(ctx context.Context, repoRoot string, set binarySet, progress io.Writer) error {
	if err := os.MkdirAll(set.dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", set.dir, err)
	}
	unlock, err := LockFile(filepath.Join(set.dir, ".build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if len(missingIn(set.dir, set.targets)) > 0 && set.prereq != nil {
		if err := set.prereq(); err != nil {
			return err
		}
	}
	toolsDir := filepath.Join(repoRoot, set.module)
	for i, t := range set.targets {
		if _, err := os.Stat(filepath.Join(set.dir, t.name)); err == nil {
			fmt.Fprintf(progress, "%s: %s %s present (%d/%d)\n", set.what, t.name, set.version, i+1, len(set.targets))
			continue
		}
		fmt.Fprintf(progress, "%s: building %s %s from the Go module proxy (%d/%d; the first build takes minutes)...\n", set.what, t.name, set.version, i+1, len(set.targets))
		start := time.Now()
		// Build to a temporary name and rename, so an interrupted build never
		// leaves a truncated binary that looks present.
		tmp := filepath.Join(set.dir, "."+t.name+".tmp")
		args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp}
		if set.tags != "" {
			args = append(args, "-tags", set.tags)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, t.pkg)...)
		cmd.Dir = toolsDir
		cmd.Stdout, cmd.Stderr = progress, progress
		if !set.cgo {
			// Static binaries: they run in any mount namespace the node
			// gives them (the shim, the CNI plugins).
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s in %s: %w", t.name, toolsDir, err)
		}
		if err := os.Rename(tmp, filepath.Join(set.dir, t.name)); err != nil {
			return fmt.Errorf("installing %s: %w", t.name, err)
		}
		fmt.Fprintf(progress, "%s: built %s in %s\n", set.what, t.name, time.Since(start).Round(time.Second))
	}
	return nil
}

func missingBinaries(dir string) []string { return missingIn(dir, buildTargets) }

func missingIn(dir string, targets []buildTarget) []string {
	var missing []string
	for _, t := range targets {
		if fi, err := os.Stat(filepath.Join(dir, t.name)); err != nil || fi.IsDir() {
			missing = append(missing, t.name)
		}
	}
	return missing
}

// LockFile takes an exclusive lock on path, waiting for it; the returned
// function releases it.
func LockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// BuildKubectl builds kubectl at the control plane's version into the
// checkout's cache, if it is not there, and returns its path. Only
// benchmarks that compare gpuslice with kubectl ask for it; tests and CI
// never build it.
func BuildKubectl(ctx context.Context, repoRoot string, progress io.Writer) (string, error) {
	dir := filepath.Join(repoRoot, ".cache", "kubectl", KubernetesVersion)
	set := binarySet{what: "kubectl", version: KubernetesVersion, dir: dir, module: "hack/controlplane", cgo: true,
		targets: []buildTarget{{"kubectl", "k8s.io/kubernetes/cmd/kubectl"}}}
	if err := buildSet(ctx, repoRoot, set, progress); err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubectl"), nil
}
