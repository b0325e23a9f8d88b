//go:build gpu && linux && cgo

package gpu

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// TestRealGPU reads every GPU through the real NVML, prints what it read
// (to compare with nvidia-smi and with the fixture in recorded.go), and
// checks the figures against go-nvml's reading of the same library. Run it
// on a GPU machine:
//
//	go test -tags gpu -v -run RealGPU ./pkg/gpu/
func TestRealGPU(t *testing.T) {
	lib := NewNVML("")
	if err := lib.Init(); err != nil {
		t.Fatalf("NVML on a GPU machine: %v", err)
	}
	t.Cleanup(func() {
		if err := lib.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	driver, err := lib.DriverVersion()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Read(lib)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.GPUs) == 0 {
		t.Fatal("NVML initialised but lists no GPU: is NVIDIA_VISIBLE_DEVICES set?")
	}
	t.Logf("driver %s, %d GPU(s)", driver, len(snap.GPUs))
	for _, g := range snap.GPUs {
		if g.Memory.Total == 0 || g.Memory.Used > g.Memory.Total {
			t.Errorf("GPU %d: implausible memory %+v", g.Index, g.Memory)
		}
		t.Logf("GPU %d %s %q: Memory{Total: %d, Free: %d, Used: %d} (%d MiB total, %d MiB used)",
			g.Index, g.UUID, g.Model, g.Memory.Total, g.Memory.Free, g.Memory.Used, g.Memory.Total>>20, g.Memory.Used>>20)
		if g.Utilization != nil {
			t.Logf("  Utilization{Gpu: %d, Memory: %d}", g.Utilization.Gpu, g.Utilization.Memory)
		}
		if g.TemperatureC != nil {
			t.Logf("  temperature %d C", *g.TemperatureC)
		}
		for _, p := range g.Processes {
			t.Logf("  pid %d: %d bytes (%d MiB) compute=%v graphics=%v", p.PID, p.UsedMemoryBytes, p.UsedMemoryBytes>>20, p.Compute, p.Graphics)
		}
	}
	crossCheck(t, snap)
}

// crossCheck reads the same GPUs through go-nvml, NVIDIA's bindings.
func crossCheck(t *testing.T, snap Snapshot) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		t.Fatalf("go-nvml Init: %v", ret)
	}
	defer nvml.Shutdown()
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS || n != len(snap.GPUs) {
		t.Fatalf("go-nvml: %d GPUs (%v), here %d", n, ret, len(snap.GPUs))
	}
	for _, g := range snap.GPUs {
		d, ret := nvml.DeviceGetHandleByIndex(g.Index)
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		uuid, _ := d.GetUUID()
		name, _ := d.GetName()
		mem, _ := d.GetMemoryInfo()
		if uuid != g.UUID || name != g.Model || mem.Total != g.Memory.Total {
			t.Errorf("GPU %d: go-nvml reads %s %q %d bytes, here %s %q %d", g.Index, uuid, name, mem.Total, g.UUID, g.Model, g.Memory.Total)
		}
		procs, ret := d.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		t.Logf("GPU %d: go-nvml agrees (%d compute processes)", g.Index, len(procs))
	}
}
