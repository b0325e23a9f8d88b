package localcluster

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
)

// The real node's releases, each pinned by its tools module (a test checks
// that these match the go.mod files).
const (
	ContainerdVersion = "v2.2.9"
	RuncVersion       = "v1.4.4"
	CNIPluginsVersion = "v1.10.0"
)

// NodeBinaries are the paths of a real node's programs.
type NodeBinaries struct {
	Kubelet, KubeProxy           string
	Containerd, Shim, Ctr, Runc  string
	CNIDir                       string // bridge, host-local, loopback, portmap
	KubernetesDir, ContainerdDir string
	RuncDir                      string
}

// nodeSets are the real node's binaries: kubelet and kube-proxy from the
// control plane's tools module, containerd, runc and the CNI plugins each
// from their own (see hack/node/containerd/go.mod for why).
func nodeSets(repoRoot string) []binarySet {
	node := func(name, version string) string {
		return filepath.Join(repoRoot, ".cache", "node", name+"-"+version)
	}
	cni := "github.com/containernetworking/plugins/plugins/"
	return []binarySet{
		{what: "node", version: KubernetesVersion, dir: node("kubernetes", KubernetesVersion), module: "hack/controlplane", cgo: true, targets: []buildTarget{
			{"kubelet", "k8s.io/kubernetes/cmd/kubelet"},
			{"kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"},
		}},
		{what: "node", version: ContainerdVersion, dir: node("containerd", ContainerdVersion), module: "hack/node/containerd", targets: []buildTarget{
			{"containerd", "github.com/containerd/containerd/v2/cmd/containerd"},
			{"containerd-shim-runc-v2", "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"},
			{"ctr", "github.com/containerd/containerd/v2/cmd/ctr"},
		}},
		{what: "node", version: RuncVersion, dir: node("runc", RuncVersion), module: "hack/node/runc", cgo: true, tags: "seccomp", prereq: seccompPrereq, targets: []buildTarget{
			{"runc", "github.com/opencontainers/runc"},
		}},
		{what: "node", version: CNIPluginsVersion, dir: node("cni-plugins", CNIPluginsVersion), module: "hack/node/cni", targets: []buildTarget{
			{"bridge", cni + "main/bridge"},
			{"host-local", cni + "ipam/host-local"},
			{"loopback", cni + "main/loopback"},
			{"portmap", cni + "meta/portmap"},
		}},
	}
}

// seccompPrereq checks what runc's seccomp build needs: cgo's compiler and
// libseccomp's headers found through pkg-config.
func seccompPrereq() error {
	if _, err := exec.LookPath("gcc"); err != nil {
		return fmt.Errorf("building runc %s with seccomp needs a C compiler: install gcc (apt-get install gcc)", RuncVersion)
	}
	if out, err := exec.Command("pkg-config", "--exists", "--print-errors", "libseccomp").CombinedOutput(); err != nil {
		return fmt.Errorf("building runc %s with seccomp needs libseccomp through pkg-config (%v: %s): apt-get install libseccomp-dev pkg-config (hack/test.sh does this as root)", RuncVersion, err, out)
	}
	return nil
}

func nodeBinariesIn(sets []binarySet) NodeBinaries {
	k, c, r, cni := sets[0].dir, sets[1].dir, sets[2].dir, sets[3].dir
	return NodeBinaries{
		Kubelet: filepath.Join(k, "kubelet"), KubeProxy: filepath.Join(k, "kube-proxy"),
		Containerd: filepath.Join(c, "containerd"), Shim: filepath.Join(c, "containerd-shim-runc-v2"), Ctr: filepath.Join(c, "ctr"),
		Runc: filepath.Join(r, "runc"), CNIDir: cni,
		KubernetesDir: k, ContainerdDir: c, RuncDir: r,
	}
}

// BuildNodeBinaries builds whichever node binaries the checkout's cache
// lacks (about 10 minutes on 2 cores the first time).
func BuildNodeBinaries(ctx context.Context, repoRoot string, progress io.Writer) (NodeBinaries, error) {
	sets := nodeSets(repoRoot)
	for _, s := range sets {
		if err := buildSet(ctx, repoRoot, s, progress); err != nil {
			return NodeBinaries{}, err
		}
	}
	return nodeBinariesIn(sets), nil
}

// EnsureNodeBinaries finds the checkout from the working directory and
// builds what its cache lacks.
func EnsureNodeBinaries(ctx context.Context, progress io.Writer) (NodeBinaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return NodeBinaries{}, err
	}
	return BuildNodeBinaries(ctx, root, progress)
}
