// Package realnode runs a real node beside the local control plane
// (localcluster): containerd and runc, the CNI bridge, a kubelet,
// kube-proxy and a stand-in NVIDIA device plugin, as root, for the tests in
// test/realnode. It is a package of its own so that the gpuslice binary,
// which runs the simulated control plane for its demo, does not carry the
// CRI, device-plugin and image-building code.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	criapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/image"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// The real node's network: a bridge made before the API server starts, whose
// address is the node's InternalIP (the kubelet refuses loopback) and the
// API server's advertised address, and the pod subnet behind it.
const (
	BridgeName = "gpuslice0"
	NodeIP     = "10.89.0.1"
	PodSubnet  = "10.89.0.0/24"
)

// PauseImage and TestboxImage are built by the harness and imported into
// containerd: the pinned sandbox image, and the tests' process image
// (internal/harness/testbox).
const (
	PauseImage   = "localhost/gpuslice/pause:test"
	TestboxImage = "localhost/gpuslice/testbox:test"
)

// FakeDevice is a device node the real node creates for its stand-in GPU.
type FakeDevice struct {
	Path         string
	Major, Minor uint32
}

// FakeDevices are NVIDIA's device nodes (nvidia-uvm's major is dynamic on a
// real host; 511 is what recent drivers get).
var FakeDevices = []FakeDevice{{"/dev/nvidia0", 195, 0}, {"/dev/nvidiactl", 195, 255}, {"/dev/nvidia-uvm", 511, 0}}

// kubeletDevicePlugins is where the kubelet's device manager listens,
// whatever its --root-dir (pluginapi.KubeletSocket).
const kubeletDevicePlugins = "/var/lib/kubelet/device-plugins"

// ErrRealNodeUnavailable means this machine cannot run a real node; the
// message says why. Tests skip on it, unless GPUSLICE_REQUIRE_REAL_NODE=1.
var ErrRealNodeUnavailable = errors.New("a real node cannot run here")

// RealNodeOptions configure StartRealNode.
type RealNodeOptions struct {
	// Name is the node's name; empty means homelabai, the seed's node.
	Name string
	// Labels are the node's labels besides the kubelet's own.
	Labels map[string]string
	// Dir holds everything: empty means a temporary folder removed by Stop.
	Dir string
	// Progress receives build and start progress lines.
	Progress io.Writer
}

// RealNode is the control plane with one real node: containerd and runc,
// the CNI bridge, a kubelet registered as Name, kube-proxy, and the
// stand-in NVIDIA device plugin advertising nvidia.com/gpu.shared ×8.
type RealNode struct {
	*localcluster.Cluster
	Name   string
	Bins   localcluster.NodeBinaries
	Plugin *DevicePlugin
	// NVML is the stand-in driver library and its processes.
	NVML *FakeNVML
	// ContainerdSocket is containerd's address, for ctr -a.
	ContainerdSocket string

	dir       string
	removeDir bool
	runtime   *localcluster.Cluster // containerd
	agents    *localcluster.Cluster // kubelet, kube-proxy
	before    hostState
	made      madeState
	unlock    func()
}

// madeState is what this node created on the host, undone by Stop.
type madeState struct {
	bridge, kubeletDir bool
	devices            []string
}

// StartRealNode builds what is missing (the first time, about 15 minutes on
// 2 cores), then starts the control plane and a real node, and waits until
// the node is Ready with its GPU shares allocatable. It needs root.
func StartRealNode(ctx context.Context, opts RealNodeOptions) (n *RealNode, err error) {
	if err := realNodePossible(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = seed.HomelabAI().Name
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	cpDir, err := localcluster.EnsureBinaries(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	bins, err := localcluster.EnsureNodeBinaries(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	// One real node per machine: they share the bridge, /dev and the
	// kubelet's device-plugin folder.
	unlock, err := localcluster.LockFile("/run/gpuslice-realnode.lock")
	if err != nil {
		return nil, err
	}
	n = &RealNode{Name: opts.Name, Bins: bins, dir: opts.Dir, unlock: unlock}
	if n.dir == "" {
		if n.dir, err = os.MkdirTemp("", "gpuslice-node-"); err != nil {
			unlock()
			return nil, fmt.Errorf("creating the node's folder: %w", err)
		}
		n.removeDir = true
	}
	// The node as made so far: the returns below set n to nil on error.
	started := n
	defer func() {
		if err != nil {
			started.Stop()
			n = nil
		}
	}()
	if n.before, err = readHostState(); err != nil {
		return nil, err
	}
	for _, d := range []string{"cp", "containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs", "images"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := n.makeDevices(); err != nil {
		return nil, err
	}
	if n.NVML, err = startFakeNVML(ctx, filepath.Join(n.dir, "nvml")); err != nil {
		return nil, err
	}
	if err := n.makeBridge(); err != nil {
		return nil, err
	}
	fmt.Fprintln(opts.Progress, "real node: starting the control plane")
	if n.Cluster, err = localcluster.Start(ctx, localcluster.Options{BinDir: cpDir, Scheduler: true, ControllerManager: true, Dir: filepath.Join(n.dir, "cp"), AdvertiseAddress: NodeIP}); err != nil {
		return nil, err
	}
	n.runtime = localcluster.NewProcesses(n.dir)
	n.agents = localcluster.NewProcesses(n.dir)
	fmt.Fprintln(opts.Progress, "real node: starting containerd")
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintln(opts.Progress, "real node: building and importing the pause and testbox images")
	if err := n.importHarnessImages(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintln(opts.Progress, "real node: starting the kubelet and kube-proxy")
	if err := n.startKubelet(opts.Labels); err != nil {
		return nil, err
	}
	if err := n.startKubeProxy(); err != nil {
		return nil, err
	}
	if err := n.waitNode(ctx, func(node *corev1.Node) bool {
		for _, t := range node.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				return false
			}
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}, "Ready and untainted"); err != nil {
		return nil, err
	}
	n.Plugin = NewDevicePlugin()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := os.Stat(filepath.Join(kubeletDevicePlugins, "kubelet.sock"))
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("waiting for the kubelet's device-plugin socket %s (kubelet log: %s): %w", kubeletDevicePlugins, n.LogFile("kubelet"), err)
	}
	if err := n.Plugin.Start(ctx, kubeletDevicePlugins); err != nil {
		return nil, err
	}
	want := int64(n.Plugin.Replicas)
	if err := n.waitNode(ctx, func(node *corev1.Node) bool {
		q := node.Status.Allocatable[corev1.ResourceName(n.Plugin.Resource)]
		return q.Value() == want
	}, fmt.Sprintf("%s allocatable %d", n.Plugin.Resource, want)); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "real node: %s Ready with %d %s\n", n.Name, want, n.Plugin.Resource)
	return n, nil
}

// realNodePossible says why this machine cannot run a real node, or nil.
func realNodePossible() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: it needs root (mknod, a bridge, iptables, containerd); run the tests as root", ErrRealNodeUnavailable)
	}
	for _, tool := range []string{"ip", "iptables", "iptables-save", "ip6tables", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s is not installed (apt-get install iproute2 iptables mount)", ErrRealNodeUnavailable, tool)
		}
	}
	return nil
}

// LogFile is the path of a node component's log (containerd, kubelet,
// kube-proxy).
func (n *RealNode) LogFile(component string) string {
	return filepath.Join(n.dir, component+".log")
}

// NodeDir is the node's folder: logs, configs, the kubelet's root, images.
func (n *RealNode) NodeDir() string { return n.dir }

func (n *RealNode) makeDevices() error {
	for _, d := range FakeDevices {
		if _, err := os.Lstat(d.Path); err == nil {
			continue // a real or earlier device: leave it
		}
		if err := syscall.Mknod(d.Path, syscall.S_IFCHR|0o666, int(mkdev(d.Major, d.Minor))); err != nil {
			return fmt.Errorf("%w: mknod %s c %d %d: %v", ErrRealNodeUnavailable, d.Path, d.Major, d.Minor, err)
		}
		n.made.devices = append(n.made.devices, d.Path)
	}
	return nil
}

func mkdev(major, minor uint32) uint64 {
	return uint64(minor&0xff) | uint64(major&0xfff)<<8 | uint64(minor&^0xff)<<12 | uint64(major&^0xfff)<<32
}

func (n *RealNode) makeBridge() error {
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		return fmt.Errorf("%w: the bridge %s already exists (a crashed run?); remove it with: ip link delete %s", ErrRealNodeUnavailable, BridgeName, BridgeName)
	}
	if err := run("ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
		return fmt.Errorf("%w: %v", ErrRealNodeUnavailable, err)
	}
	n.made.bridge = true
	if err := run("ip", "addr", "add", NodeIP+"/24", "dev", BridgeName); err != nil {
		return err
	}
	return run("ip", "link", "set", BridgeName, "up")
}

// run runs a host tool, its output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *RealNode) startContainerd(ctx context.Context) error {
	cd := filepath.Join(n.dir, "containerd")
	n.ContainerdSocket = filepath.Join(cd, "containerd.sock")
	cni := filepath.Join(n.dir, "cni")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "gpuslice-realnode",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, BridgeName, filepath.Join(cni, "ipam"), PodSubnet, NodeIP)
	if err := os.WriteFile(filepath.Join(cni, "net.d", "10-gpuslice.conflist"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("writing the CNI config: %w", err)
	}
	runcOptions := fmt.Sprintf(`runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%%s.options]
        BinaryName = %q
        SystemdCgroup = false`, n.Bins.Runc)
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %q
  [plugins.'io.containerd.cri.v1.runtime']
    # Without it every sandbox fails: "failed to update
    # /proc/self/oom_score_adj: Permission denied".
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%q]
      conf_dir = %q
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      %s
      # K3s maps the handler nvidia to the NVIDIA container runtime; here
      # it is runc, the devices coming from the webhook's hostPaths.
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]
      %s
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), n.ContainerdSocket, n.ContainerdSocket+".ttrpc",
		filepath.Join(cd, "opt"), PauseImage, n.Bins.CNIDir, filepath.Join(cni, "net.d"),
		fmt.Sprintf(runcOptions, "runc"), fmt.Sprintf(runcOptions, "nvidia"))
	cfgPath := filepath.Join(cd, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("writing containerd's config: %w", err)
	}
	cmd := exec.Command(n.Bins.Containerd, "--config", cfgPath, "--log-level", "warn")
	// containerd finds its shim, and the shim runc, through PATH.
	cmd.Env = append(os.Environ(), "PATH="+n.Bins.ContainerdDir+":"+n.Bins.RuncDir+":"+os.Getenv("PATH"))
	if err := n.runtime.RunCommand("containerd", cmd); err != nil {
		return err
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := n.runtime.Exited(); err != nil {
			return false, err
		}
		rt, closeConn, err := n.cri()
		if err != nil {
			last = err
			return false, nil
		}
		defer closeConn()
		st, err := rt.Status(ctx, &criapi.StatusRequest{})
		if err != nil {
			last = err
			return false, nil
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == criapi.RuntimeReady && !c.Status {
				last = fmt.Errorf("runtime not ready: %s %s", c.Reason, c.Message)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for containerd's CRI (log %s): %w (last: %v)", n.LogFile("containerd"), err, last)
	}
	return nil
}

// cri connects to containerd's CRI runtime service.
func (n *RealNode) cri() (criapi.RuntimeServiceClient, func(), error) {
	conn, err := grpc.NewClient("unix://"+n.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dialling containerd at %s: %w", n.ContainerdSocket, err)
	}
	return criapi.NewRuntimeServiceClient(conn), func() { conn.Close() }, nil
}

// ImportImage loads a tarball (docker-archive or OCI) into containerd's
// k8s.io namespace, where the kubelet finds it, as `ctr -n k8s.io images
// import` does for a K3s user.
func (n *RealNode) ImportImage(ctx context.Context, tarball string) error {
	cmd := exec.CommandContext(ctx, n.Bins.Ctr, "-a", n.ContainerdSocket, "-n", "k8s.io", "images", "import", tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr -n k8s.io images import %s: %w: %s", tarball, err, out)
	}
	return nil
}

// importHarnessImages builds the pause and testbox images from
// internal/harness/testbox and imports them.
func (n *RealNode) importHarnessImages(ctx context.Context) error {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	for _, im := range []struct {
		ref string
		cmd []string
	}{{PauseImage, []string{"pause"}}, {TestboxImage, []string{"sleep"}}} {
		spec := image.Spec{Ref: im.ref, Dir: root, Package: "./internal/harness/testbox", Binary: "/testbox", Cmd: im.cmd, Title: "gpuslice testbox", Root: im.ref == PauseImage}
		img, err := image.Build(ctx, spec, image.HostPlatform())
		if err != nil {
			return err
		}
		file := filepath.Join(n.dir, "images", filepath.Base(strings.ReplaceAll(im.ref, ":", "-"))+".tar")
		if err := image.WriteTarball(file, im.ref, img); err != nil {
			return err
		}
		if err := n.ImportImage(ctx, file); err != nil {
			return err
		}
	}
	return nil
}

func (n *RealNode) startKubelet(labels map[string]string) error {
	kd := filepath.Join(n.dir, "kubelet")
	port := localcluster.FreePort()
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
# A local test node only: anyone who reaches it may use it.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# The host is cgroup v1 (hybrid), without systemd managing the kubelet.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDirectory: %s
# Never evict or collect images on a small disk.
evictionHard: {memory.available: "0%%", nodefs.available: "0%%", nodefs.inodesFree: "0%%", imagefs.available: "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
`, NodeIP, port, n.ContainerdSocket, filepath.Join(n.dir, "pod-logs"))
	cfgPath := filepath.Join(kd, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("writing the kubelet's config: %w", err)
	}
	if _, err := os.Stat("/var/lib/kubelet"); errors.Is(err, os.ErrNotExist) {
		n.made.kubeletDir = true
	}
	var ls []string
	for k, v := range labels {
		ls = append(ls, k+"="+v)
	}
	return n.agents.RunCommand("kubelet", exec.Command(n.Bins.Kubelet,
		"--config="+cfgPath, "--kubeconfig="+n.Kubeconfig,
		"--hostname-override="+n.Name, "--node-ip="+NodeIP,
		"--root-dir="+filepath.Join(kd, "root"), "--cert-dir="+filepath.Join(kd, "pki"),
		"--node-labels="+strings.Join(ls, ","), "--v=1",
	))
}

func (n *RealNode) startKubeProxy() error {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
# Leave the host's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0}
iptables: {localhostNodePorts: false}
`, n.Kubeconfig, PodSubnet, n.Name, localcluster.FreePort(), localcluster.FreePort())
	cfgPath := filepath.Join(n.dir, "kube-proxy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("writing kube-proxy's config: %w", err)
	}
	return n.agents.RunCommand("kube-proxy", exec.Command(n.Bins.KubeProxy, "--config="+cfgPath, "--v=1"))
}

// waitNode polls the node until ok, reporting a component that exits.
func (n *RealNode) waitNode(ctx context.Context, ok func(*corev1.Node) bool, what string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, g := range []*localcluster.Cluster{n.runtime, n.agents} {
			if err := g.Exited(); err != nil {
				return false, err
			}
		}
		node, err := n.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("taints %v, conditions %v, allocatable %v", node.Spec.Taints, node.Status.Conditions, node.Status.Allocatable)
		return ok(node), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for node %s to be %s (logs in %s): %w (last: %s)", n.Name, what, n.dir, err, last)
	}
	return nil
}

// Stop ends everything the node started and removes what it made on the
// host: the pods' sandboxes (and with them their network namespaces and
// veths), every process, the kubelet's mounts and cgroups, the bridge, the
// KUBE-* and CNI-* iptables chains, the device nodes and the kubelet's
// device-plugin folder. Leftovers reports anything it could not remove.
func (n *RealNode) Stop() {
	if n.Plugin != nil {
		n.Plugin.Stop()
	}
	n.NVML.stop()
	if n.agents != nil {
		n.agents.Stop()
	}
	if n.runtime != nil {
		n.removeSandboxes()
		n.runtime.Stop()
	}
	n.killShims()
	if n.Cluster != nil {
		n.Cluster.Stop()
	}
	unmountUnder(n.dir)
	removeNew(n.before)
	if n.made.bridge {
		_ = run("ip", "link", "delete", BridgeName)
	}
	for _, d := range n.made.devices {
		_ = os.Remove(d)
	}
	if n.made.kubeletDir {
		unmountUnder("/var/lib/kubelet")
		_ = os.RemoveAll("/var/lib/kubelet")
	} else {
		_ = os.Remove(filepath.Join(kubeletDevicePlugins, "kubelet.sock"))
	}
	if n.removeDir {
		_ = os.RemoveAll(n.dir)
	}
	if n.unlock != nil {
		n.unlock()
		n.unlock = nil
	}
}

// removeSandboxes stops and removes every pod sandbox through the CRI, so
// the CNI plugins tear down each pod's network and containerd its netns.
func (n *RealNode) removeSandboxes() {
	rt, closeConn, err := n.cri()
	if err != nil {
		return
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &criapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, s := range list.Items {
		_, _ = rt.StopPodSandbox(ctx, &criapi.StopPodSandboxRequest{PodSandboxId: s.Id})
		_, _ = rt.RemovePodSandbox(ctx, &criapi.RemovePodSandboxRequest{PodSandboxId: s.Id})
	}
}

// killShims ends any runc shim this node's containerd started and that
// outlived it, found by its executable's path.
func (n *RealNode) killShims() {
	for _, pid := range processesOf(n.Bins.Shim, n.Bins.Runc) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// processesOf lists the processes running one of the executables.
func processesOf(exes ...string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		for _, x := range exes {
			if x != "" && exe == x {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// Leftovers lists what a stopped node left on the host: processes of its
// binaries, mounts under its folder, its bridge, network namespaces,
// iptables chains, cgroups and device nodes that were not there before.
func (n *RealNode) Leftovers() []string {
	var left []string
	for _, pid := range processesOf(n.Bins.Kubelet, n.Bins.KubeProxy, n.Bins.Containerd, n.Bins.Shim, n.Bins.Runc) {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	for _, m := range mountsUnder(n.dir) {
		left = append(left, "mount "+m)
	}
	if n.made.kubeletDir {
		if _, err := os.Stat("/var/lib/kubelet"); err == nil {
			left = append(left, "folder /var/lib/kubelet")
		}
	}
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		left = append(left, "bridge "+BridgeName)
	}
	for _, d := range n.made.devices {
		if _, err := os.Lstat(d); err == nil {
			left = append(left, "device "+d)
		}
	}
	now, err := readHostState()
	if err != nil {
		return append(left, err.Error())
	}
	left = append(left, now.newSince(n.before)...)
	return left
}
