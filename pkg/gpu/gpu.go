// Package gpu reads NVIDIA GPUs and the processes holding their memory
// through NVML. NVML sits behind one small interface, NVML, so that the
// agent runs, and is tested, with the real library (libnvidia-ml.so.1,
// dlopened at run time, see nvml_cgo.go) or with Fake, a recorded GPU in
// NVML's own types (types.go).
package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// NVML is the part of the NVML API the agent uses, by device index.
// Implementations return Return values as errors, so callers can test
// them with errors.Is.
type NVML interface {
	Init() error
	Shutdown() error
	// DriverVersion is the kernel driver's version, for the log.
	DriverVersion() (string, error)
	DeviceCount() (int, error)
	UUID(index int) (string, error)
	Name(index int) (string, error)
	MemoryInfo(index int) (Memory, error)
	UtilizationRates(index int) (Utilization, error)
	// Temperature is the GPU die's, in degrees Celsius.
	Temperature(index int) (uint32, error)
	// ComputeRunningProcesses are CUDA contexts (vLLM, Ollama, and NVENC or
	// NVDEC driven through CUDA, as ffmpeg and Plex do on Linux).
	ComputeRunningProcesses(index int) ([]ProcessInfo, error)
	// GraphicsRunningProcesses are OpenGL and Vulkan contexts (Xorg, and
	// transcoders that tone-map through Vulkan).
	GraphicsRunningProcesses(index int) ([]ProcessInfo, error)
}

// Snapshot is every GPU as one scrape read it.
type Snapshot struct {
	GPUs []GPU
}

// GPU is one device.
type GPU struct {
	Index  int
	UUID   string
	Model  string
	Memory Memory
	// Utilization and TemperatureC are nil when the device does not report
	// them (ERROR_NOT_SUPPORTED), as some data-centre and virtual GPUs do.
	Utilization  *Utilization
	TemperatureC *uint32
	// Processes hold memory on the device, sorted by PID; a process with
	// both a compute and a graphics context appears once.
	Processes []Process
}

// Process is one process with a context on a GPU.
type Process struct {
	PID uint32
	// UsedMemoryBytes is 0 when NVML cannot tell (VALUE_NOT_AVAILABLE).
	UsedMemoryBytes   uint64
	Compute, Graphics bool
}

// Read takes a snapshot of every GPU. A device that fails is left out and
// its error joined into the returned one, so one bad GPU does not hide the
// others; IsFatal says whether the error means NVML must be initialised
// again.
func Read(lib NVML) (Snapshot, error) {
	n, err := lib.DeviceCount()
	if err != nil {
		return Snapshot{}, fmt.Errorf("counting GPUs: %w", err)
	}
	snap := Snapshot{GPUs: make([]GPU, 0, n)}
	var errs []error
	for i := range n {
		g, err := readDevice(lib, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("GPU %d: %w", i, err))
			continue
		}
		snap.GPUs = append(snap.GPUs, g)
	}
	return snap, errors.Join(errs...)
}

func readDevice(lib NVML, i int) (GPU, error) {
	g := GPU{Index: i}
	var err error
	if g.UUID, err = lib.UUID(i); err != nil {
		return g, fmt.Errorf("reading UUID: %w", err)
	}
	if g.Model, err = lib.Name(i); err != nil {
		return g, fmt.Errorf("reading name: %w", err)
	}
	if g.Memory, err = lib.MemoryInfo(i); err != nil {
		return g, fmt.Errorf("reading memory: %w", err)
	}
	if u, err := lib.UtilizationRates(i); err == nil {
		g.Utilization = &u
	} else if !errors.Is(err, ERROR_NOT_SUPPORTED) {
		return g, fmt.Errorf("reading utilization: %w", err)
	}
	if t, err := lib.Temperature(i); err == nil {
		g.TemperatureC = &t
	} else if !errors.Is(err, ERROR_NOT_SUPPORTED) {
		return g, fmt.Errorf("reading temperature: %w", err)
	}
	compute, err := lib.ComputeRunningProcesses(i)
	if err != nil && !errors.Is(err, ERROR_NOT_SUPPORTED) {
		return g, fmt.Errorf("listing compute processes: %w", err)
	}
	graphics, err := lib.GraphicsRunningProcesses(i)
	if err != nil && !errors.Is(err, ERROR_NOT_SUPPORTED) {
		return g, fmt.Errorf("listing graphics processes: %w", err)
	}
	g.Processes = mergeProcesses(compute, graphics)
	return g, nil
}

// notAvailable is NVML_VALUE_NOT_AVAILABLE as an unsigned long long.
const notAvailable = ^uint64(0)

// mergeProcesses lists each PID once. A process with both kinds of context
// is reported by both lists with the same figure (NVML's usedGpuMemory is
// per process, not per context), so the larger is kept, never the sum.
func mergeProcesses(compute, graphics []ProcessInfo) []Process {
	byPID := make(map[uint32]int, len(compute)+len(graphics)) // index in out
	out := make([]Process, 0, len(compute)+len(graphics))
	add := func(list []ProcessInfo, isCompute bool) {
		for _, pi := range list {
			mem := pi.UsedGpuMemory
			if mem == notAvailable {
				mem = 0
			}
			i, ok := byPID[pi.Pid]
			if !ok {
				i = len(out)
				byPID[pi.Pid] = i
				out = append(out, Process{PID: pi.Pid})
			}
			p := &out[i]
			p.UsedMemoryBytes = max(p.UsedMemoryBytes, mem)
			if isCompute {
				p.Compute = true
			} else {
				p.Graphics = true
			}
		}
	}
	add(compute, true)
	add(graphics, false)
	slices.SortFunc(out, func(a, b Process) int { return cmp.Compare(a.PID, b.PID) })
	return out
}

// IsFatal says whether err means the NVML session is gone (driver reloaded,
// GPU fallen off the bus, library and driver out of step) and must be
// initialised again, rather than one read having failed.
func IsFatal(err error) bool {
	for _, r := range []Return{ERROR_UNINITIALIZED, ERROR_DRIVER_NOT_LOADED,
		ERROR_GPU_IS_LOST, ERROR_LIB_RM_VERSION_MISMATCH, ERROR_LIBRARY_NOT_FOUND} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}
