//go:build linux && cgo

package nvmltest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
	"github.com/gpuslice/gpuslice/pkg/gpu"
)

const mib = 1 << 20

// read loads the library through the agent's binding and reads GPU 0.
func read(t *testing.T, lib string) gpu.GPU {
	t.Helper()
	l := gpu.NewNVML(lib)
	if err := l.Init(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Shutdown() }()
	snap, err := gpu.Read(l)
	if err != nil {
		t.Fatal(err)
	}
	return snap.GPUs[0]
}

// TestStateReportsLiveProcessesOnly: the library reports the state file's
// processes that exist, with their memory, and frees a process's memory
// once it is gone; a registration gives the registrar the client's PID.
func TestStateReportsLiveProcessesOnly(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the stand-in NVML")
	}
	dir := t.TempDir()
	state, lib := filepath.Join(dir, "processes"), filepath.Join(dir, "libnvidia-ml.so.1")
	if err := nvmltest.Build(context.Background(), lib, state); err != nil {
		t.Fatal(err)
	}
	s, err := nvmltest.NewState(state)
	if err != nil {
		t.Fatal(err)
	}
	if g := read(t, lib); len(g.Processes) != 0 || g.Memory.Free != nvmltest.TotalMiB*mib {
		t.Fatalf("empty state: %d processes, %d free; want none and all free", len(g.Processes), g.Memory.Free)
	}

	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	if err := s.Set(child.Process.Pid, 1500); err != nil {
		t.Fatal(err)
	}
	// A PID above pid_max: listed, never alive.
	if err := s.Set(1<<23, 700); err != nil {
		t.Fatal(err)
	}
	reg, err := nvmltest.ServeRegistrar(filepath.Join(dir, "register.sock"), s)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c, err := nvmltest.Register(filepath.Join(dir, "register.sock"), 300)
	if err != nil {
		t.Fatal(err)
	}
	if c.HostPID != os.Getpid() {
		t.Errorf("the registrar saw PID %d, want this process's %d", c.HostPID, os.Getpid())
	}
	want := map[uint32]uint64{uint32(child.Process.Pid): 1500 * mib, uint32(os.Getpid()): 300 * mib}
	waitFor(t, lib, "the sleep child and this process registered", func(g gpu.GPU) bool {
		return sameProcesses(g, want) && g.Memory.Used == 1800*mib
	})
	if err := c.Set(900); err != nil {
		t.Fatal(err)
	}
	want[uint32(os.Getpid())] = 900 * mib
	waitFor(t, lib, "this process's new amount", func(g gpu.GPU) bool { return sameProcesses(g, want) })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	delete(want, uint32(os.Getpid()))
	waitFor(t, lib, "the closed registration removed", func(g gpu.GPU) bool { return sameProcesses(g, want) })

	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	g := read(t, lib)
	if len(g.Processes) != 0 || g.Memory.Free != g.Memory.Total {
		t.Errorf("after the child exited: processes %+v, %d of %d free; want none, all free", g.Processes, g.Memory.Free, g.Memory.Total)
	}
}

func sameProcesses(g gpu.GPU, want map[uint32]uint64) bool {
	if len(g.Processes) != len(want) {
		return false
	}
	for _, p := range g.Processes {
		if want[p.PID] != p.UsedMemoryBytes {
			return false
		}
	}
	return true
}

// waitFor polls the library: the registrar writes the state file on its
// own goroutine.
func waitFor(t *testing.T, lib, what string, ok func(gpu.GPU) bool) {
	t.Helper()
	var last gpu.GPU
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		last = read(t, lib)
		return ok(last), nil
	})
	if err != nil {
		t.Fatalf("%s: the library reports %+v", what, last.Processes)
	}
}
