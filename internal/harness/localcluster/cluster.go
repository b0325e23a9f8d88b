// Package localcluster runs a real Kubernetes control plane on loopback for
// gpuslice's tests and demo: etcd and kube-apiserver, and optionally
// kube-scheduler and kube-controller-manager. There is no kubelet: nodes are
// simulated through the API (see nodes.go), exactly as the scheduler sees a
// real node advertising nvidia.com/gpu.shared.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gpuslice/gpuslice/pkg/certs"
)

// Options selects what to run.
type Options struct {
	// BinDir holds the binaries; empty means FindBinaries.
	BinDir string
	// Scheduler starts kube-scheduler, so pods are bound to simulated nodes.
	Scheduler bool
	// ControllerManager starts kube-controller-manager, so Deployments make
	// ReplicaSets and pods.
	ControllerManager bool
	// Dir keeps data, certificates, kubeconfig and logs; empty means a
	// temporary folder removed by Stop.
	Dir string
	// AdvertiseAddress, for a real node (StartRealNode), is a host address
	// pods reach: the API server listens on every address, advertises this
	// one as the kubernetes Service's endpoint, and its certificate names it.
	// Service-account admission is then on, as pods need their tokens.
	AdvertiseAddress string
}

// Cluster is a running control plane.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file for kubectl or
	// gpuslice's own commands.
	Kubeconfig string
	// Dir holds logs (*.log) of every component.
	Dir string

	removeDir bool
	mu        sync.Mutex
	procs     []*process
}

// process is one running component; done closes when it exits.
type process struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	state string // how it exited, set before done closes
}

// Start runs the control plane and waits until the API server is ready.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	c = &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "gpuslice-cluster-"); err != nil {
			return nil, fmt.Errorf("creating control-plane folder: %w", err)
		}
		c.removeDir = true
	}
	// Every error return sets c to nil: stop what started through its own
	// variable.
	started := c
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	var extraIPs []net.IP
	bind, advertise := "127.0.0.1", "127.0.0.1"
	// Without a kubelet nothing mounts service-account tokens, and the
	// plugin would refuse pods until the controller manager has made each
	// namespace's default ServiceAccount.
	admission := "--disable-admission-plugins=ServiceAccount"
	if opts.AdvertiseAddress != "" {
		ip := net.ParseIP(opts.AdvertiseAddress)
		if ip == nil {
			return nil, fmt.Errorf("advertise address %q is not an IP address", opts.AdvertiseAddress)
		}
		extraIPs = append(extraIPs, ip)
		bind, advertise = "0.0.0.0", opts.AdvertiseAddress
		admission = "--enable-admission-plugins=ServiceAccount"
	}
	pki, err := writePKI(c.Dir, extraIPs...)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := FreePort(), FreePort(), FreePort()
	if etcdPort == 0 || peerPort == 0 || apiPort == 0 {
		return nil, errors.New("no free loopback port for the control plane")
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := c.run(binDir, Etcd,
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", // a throwaway cluster does not need durable writes
		"--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := c.run(binDir, KubeAPIServer,
		"--etcd-servers="+etcdURL,
		"--bind-address="+bind, "--advertise-address="+advertise,
		"--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+pki.serving, "--tls-private-key-file="+pki.servingKey,
		"--client-ca-file="+pki.ca,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saKey,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		admission,
		// Simulated nodes have no kubelet; dialling their InternalIP
		// (127.0.0.1) for logs fails at once on loopback instead of
		// resolving the node's hostname through the network's DNS. A real
		// node's InternalIP is its bridge address.
		"--kubelet-preferred-address-types=InternalIP",
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
	); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, "https://127.0.0.1:"+strconv.Itoa(apiPort), pki); err != nil {
		return nil, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.Kubeconfig, err)
	}
	c.Config.QPS, c.Config.Burst = 200, 400
	// Webhook warnings are for the tests that ask for them (demo.WarningRecorder).
	c.Config.WarningHandler = rest.NoWarnings{}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if opts.Scheduler {
		if err := c.run(binDir, KubeScheduler,
			"--kubeconfig="+c.Kubeconfig,
			"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(FreePort()),
			"--leader-elect=false",
		); err != nil {
			return nil, err
		}
	}
	if opts.ControllerManager {
		// nodelifecycle would taint simulated nodes not-ready, since no
		// kubelet renews their leases; a real node needs it to lift the
		// not-ready taint the kubelet registers with.
		controllers := "--controllers=*,-nodelifecycle"
		if opts.AdvertiseAddress != "" {
			controllers = "--controllers=*"
		}
		if err := c.run(binDir, KubeControllerManager,
			"--kubeconfig="+c.Kubeconfig,
			"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(FreePort()),
			"--leader-elect=false",
			controllers,
			"--service-account-private-key-file="+pki.saKey,
			"--root-ca-file="+pki.ca,
			"--use-service-account-credentials=false",
		); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// waitReady polls /readyz: the API server answers within seconds, and a
// process that died is reported with its log instead of a timeout.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Exited(); err != nil {
			return false, err
		}
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			last = fmt.Errorf("%w: %s", err, body)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-apiserver to be ready (logs in %s): %w (last answer: %v)", c.Dir, err, last)
	}
	return nil
}

func (c *Cluster) run(binDir, name string, args ...string) error {
	return c.RunCommand(name, exec.Command(filepath.Join(binDir, name), args...))
}

// RunCommand runs cmd as the component name, its output in Dir/name.log,
// stopped by Stop with the rest.
func (c *Cluster) RunCommand(name string, cmd *exec.Cmd) error {
	logFile, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return fmt.Errorf("creating log for %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, and killed with its parent on Linux, so a
	// crashed test leaves no orphan apiserver behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.state = fmt.Sprint(err)
		close(p.done)
	}()
	return nil
}

// Exited reports a component that stopped on its own, with its log's tail.
func (c *Cluster) Exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%s): %s", p.name, p.state, tail(filepath.Join(c.Dir, p.name+".log"), 2000))
		default:
		}
	}
	return nil
}

// NewProcesses is an empty group of components kept in dir (their logs),
// for harnesses that start their own: RunCommand, Exited and Stop.
func NewProcesses(dir string) *Cluster { return &Cluster{Dir: dir} }

// Stop ends every component, newest first, and removes a temporary folder.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if c.removeDir {
		_ = os.RemoveAll(c.Dir)
	}
}

// Healthy reports whether an HTTP GET of the API server's /livez succeeds.
func (c *Cluster) Healthy(ctx context.Context) bool {
	rc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+"/livez", nil)
	if err != nil {
		return false
	}
	resp, err := rc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

type pkiFiles struct{ ca, serving, servingKey, admin, adminKey, saKey string }

// writePKI creates the cluster CA, the API server's serving certificate, an
// admin client certificate (group system:masters) and the service-account
// signing key.
func writePKI(dir string, extraIPs ...net.IP) (pkiFiles, error) {
	pdir := filepath.Join(dir, "pki")
	f := pkiFiles{
		ca: filepath.Join(pdir, "ca.crt"), serving: filepath.Join(pdir, "apiserver.crt"), servingKey: filepath.Join(pdir, "apiserver.key"),
		admin: filepath.Join(pdir, "admin.crt"), adminKey: filepath.Join(pdir, "admin.key"), saKey: filepath.Join(pdir, "sa.key"),
	}
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return f, fmt.Errorf("creating %s: %w", pdir, err)
	}
	ca, err := certs.NewCA("gpuslice-local-cluster-ca", 24*time.Hour*365)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.ca, ca.CertPEM, 0o644); err != nil {
		return f, fmt.Errorf("writing %s: %w", f.ca, err)
	}
	serving, err := ca.Issue(certs.LeafOptions{
		CommonName: "kube-apiserver", DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPs: append([]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}, extraIPs...), ValidFor: 24 * time.Hour * 365,
	})
	if err != nil {
		return f, err
	}
	admin, err := ca.Issue(certs.LeafOptions{CommonName: "gpuslice-admin", Organization: []string{"system:masters"}, ValidFor: 24 * time.Hour * 365, Client: true})
	if err != nil {
		return f, err
	}
	sa, err := ca.Issue(certs.LeafOptions{CommonName: "service-accounts", ValidFor: time.Hour})
	if err != nil {
		return f, err
	}
	if err := serving.WriteFiles(f.serving, f.servingKey); err != nil {
		return f, err
	}
	if err := admin.WriteFiles(f.admin, f.adminKey); err != nil {
		return f, err
	}
	// Only the key matters for signing service-account tokens.
	if err := os.WriteFile(f.saKey, sa.KeyPEM, 0o600); err != nil {
		return f, fmt.Errorf("writing %s: %w", f.saKey, err)
	}
	return f, nil
}

func writeKubeconfig(path, server string, f pkiFiles) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: f.ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: f.admin, ClientKey: f.adminKey}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// FreePort asks the kernel for a free loopback port. Another process could
// take it before the component binds it; that shows as a clear start error.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
