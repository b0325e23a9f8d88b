// Package nvmltest is the stand-in NVML for machines without a GPU: a C
// libnvidia-ml.so.1 (c/fake_nvml.c) that the agent's real binding loads,
// and, for the real node, the list of real processes it reports.
//
// On the real node the library runs in state mode: it reads a file of
// "PID MIB" lines (State writes it) and reports only the PIDs that still
// exist, so a stopped container's memory comes back as free. A GPU
// workload registers itself through a unix socket (Registrar): the kernel
// gives the registrar the client's PID as the host sees it (SO_PEERCRED),
// which a process in a container cannot learn by itself; the lines it
// sends are its memory in MiB, the last one counts, and closing the
// connection (the process exiting) removes it.
package nvmltest

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

//go:embed c/fake_nvml.c
var source []byte

// TotalMiB is the stand-in GPU's memory (the reference RTX 3080 Ti).
const TotalMiB = 12288

// Environment variables the library reads (see c/fake_nvml.c).
const (
	EnvState     = "GPUSLICE_FAKE_NVML_STATE"
	EnvProcRoot  = "GPUSLICE_FAKE_NVML_PROC_ROOT"
	EnvProcesses = "GPUSLICE_FAKE_NVML_PROCESSES"
	EnvInit      = "GPUSLICE_FAKE_NVML_INIT"
)

// The stand-in GPU workload's interface (testbox gpu in the real-node
// harness).
const (
	// EnvSocket is the registration socket it connects to.
	EnvSocket = "GPUSLICE_FAKE_NVML_SOCKET"
	// EnvWorkloadMiB is the memory it holds when GPU_MEMORY_UTILIZATION
	// is unset.
	EnvWorkloadMiB = "GPUSLICE_GPU_MIB"
	// WorkloadPort serves /health, /pid (its PID on the host), and
	// /memory: GET the MiB held, POST ?mib=N to hold N.
	WorkloadPort = 8000
)

// Build compiles the library to lib with the system C compiler. A
// non-empty stateFile is compiled in as the state mode's default file
// (the path as the loading process sees it).
func Build(ctx context.Context, lib, stateFile string) error {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		if cc, err = exec.LookPath("cc"); err != nil {
			return fmt.Errorf("no C compiler to build the stand-in NVML library (apt-get install -y gcc): %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "fake-nvml-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "fake_nvml.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return err
	}
	args := []string{"-shared", "-fPIC", "-O2", "-o", lib, src}
	if stateFile != "" {
		args = append(args, "-DFAKE_NVML_STATE="+strconv.Quote(stateFile))
	}
	if out, err := exec.CommandContext(ctx, cc, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building the stand-in NVML (%s %s): %w\n%s", cc, strings.Join(args, " "), err, out)
	}
	return nil
}

// State is the state file: the processes the library may report.
type State struct {
	file string
	mu   sync.Mutex
	mib  map[int]uint64
}

// NewState starts an empty state file.
func NewState(file string) (*State, error) {
	s := &State{file: file, mib: map[int]uint64{}}
	return s, s.write()
}

// Set records pid as holding mib MiB.
func (s *State) Set(pid int, mib uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mib[pid] = mib
	return s.write()
}

// Remove forgets pid.
func (s *State) Remove(pid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mib, pid)
	return s.write()
}

// write replaces the file in one rename, so the library never reads half
// of it. Called with mu held.
func (s *State) write() error {
	pids := make([]int, 0, len(s.mib))
	for pid := range s.mib {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	var b strings.Builder
	for _, pid := range pids {
		fmt.Fprintf(&b, "%d %d\n", pid, s.mib[pid])
	}
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the stand-in NVML's processes: %w", err)
	}
	if err := os.Rename(tmp, s.file); err != nil {
		return fmt.Errorf("writing the stand-in NVML's processes: %w", err)
	}
	return nil
}

// Registrar accepts GPU workloads' registrations on a unix socket.
type Registrar struct {
	state *State
	ln    *net.UnixListener
}

// ServeRegistrar listens on socket (mode 0666: workloads run as any user)
// until Close.
func ServeRegistrar(socket string, state *State) (*Registrar, error) {
	_ = os.Remove(socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("stand-in NVML registrar: %w", err)
	}
	if err := os.Chmod(socket, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("stand-in NVML registrar: %w", err)
	}
	r := &Registrar{state: state, ln: ln}
	go r.accept()
	return r, nil
}

func (r *Registrar) accept() {
	for {
		c, err := r.ln.AcceptUnix()
		if err != nil {
			return
		}
		go r.serve(c)
	}
}

// serve records the peer's memory until it hangs up.
func (r *Registrar) serve(c *net.UnixConn) {
	defer c.Close()
	pid, err := peerPID(c)
	if err != nil {
		return
	}
	defer func() { _ = r.state.Remove(pid) }()
	sc := bufio.NewScanner(c)
	for first := true; sc.Scan(); first = false {
		mib, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			return
		}
		if err := r.state.Set(pid, mib); err != nil {
			return
		}
		// The answer to the first line: the client's PID on the host.
		if first {
			if _, err := fmt.Fprintf(c, "%d\n", pid); err != nil {
				return
			}
		}
	}
}

// peerPID is the connecting process's PID in this process's PID namespace.
func peerPID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Pid), nil
}

// Close stops accepting; open registrations end with their processes.
func (r *Registrar) Close() error {
	err := r.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Client is a registered GPU workload.
type Client struct {
	conn net.Conn
	// HostPID is this process's PID as the host (the registrar) sees it.
	HostPID int
}

// Register connects to the registrar and reports mib MiB; it returns
// once the registrar has recorded it.
func Register(socket string, mib uint64) (*Client, error) {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("registering with the stand-in NVML at %s: %w", socket, err)
	}
	c := &Client{conn: conn}
	if err := c.Set(mib); err != nil {
		conn.Close()
		return nil, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil {
		c.HostPID, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("registering with the stand-in NVML at %s: no answer: %w", socket, err)
	}
	return c, nil
}

// Set reports a new amount.
func (c *Client) Set(mib uint64) error {
	if _, err := fmt.Fprintf(c.conn, "%d\n", mib); err != nil {
		return fmt.Errorf("reporting GPU memory to the stand-in NVML: %w", err)
	}
	return nil
}

// Close unregisters.
func (c *Client) Close() error { return c.conn.Close() }
