package gpu

import (
	"fmt"
	"slices"
	"sync"
)

// Fake is an NVML that answers from recorded values, in NVML's own types,
// for tests, benchmarks and the end-to-end run on machines without a GPU.
// It behaves like the library where the agent can tell: every query fails
// with ERROR_UNINITIALIZED before Init and after Shutdown.
type Fake struct {
	mu      sync.Mutex
	Devices []FakeDevice
	// InitErrors are returned by the next calls to Init, in order, before
	// Init succeeds: a driver that shows up late.
	InitErrors []error
	// ReadErr, while set, fails every device query: ERROR_GPU_IS_LOST
	// plays a GPU falling off the bus.
	ReadErr error
	// Inits counts calls to Init.
	Inits       int
	initialized bool
}

// FakeDevice is one recorded GPU.
type FakeDevice struct {
	UUID        string
	Name        string
	Memory      Memory
	Utilization Utilization
	Temperature uint32
	Compute     []ProcessInfo
	Graphics    []ProcessInfo
	// NotSupported makes utilization and temperature fail with
	// ERROR_NOT_SUPPORTED, as on some virtual GPUs.
	NotSupported bool
}

// Clone copies f's recorded state, so a test can change it freely.
func (f *Fake) Clone() *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &Fake{Devices: slices.Clone(f.Devices), InitErrors: slices.Clone(f.InitErrors)}
	for i := range c.Devices {
		c.Devices[i].Compute = slices.Clone(c.Devices[i].Compute)
		c.Devices[i].Graphics = slices.Clone(c.Devices[i].Graphics)
	}
	return c
}

// Update changes the fake under its lock, for tests that change it while
// the agent reads.
func (f *Fake) Update(change func(f *Fake)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// InitCount is Inits, read under the lock.
func (f *Fake) InitCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Inits
}

func (f *Fake) Init() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Inits++
	if len(f.InitErrors) > 0 {
		err := f.InitErrors[0]
		f.InitErrors = f.InitErrors[1:]
		return err
	}
	f.initialized = true
	return nil
}

func (f *Fake) Shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.initialized {
		return ERROR_UNINITIALIZED
	}
	f.initialized = false
	return nil
}

func (f *Fake) DriverVersion() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.initialized {
		return "", ERROR_UNINITIALIZED
	}
	return RecordedDriverVersion, nil
}

func (f *Fake) DeviceCount() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.initialized {
		return 0, ERROR_UNINITIALIZED
	}
	return len(f.Devices), nil
}

// get runs read on device i under the lock, after NVML's checks.
func get[T any](f *Fake, i int, read func(*FakeDevice) (T, error)) (T, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var zero T
	if !f.initialized {
		return zero, ERROR_UNINITIALIZED
	}
	if i < 0 || i >= len(f.Devices) {
		return zero, fmt.Errorf("no GPU %d: %w", i, ERROR_INVALID_ARGUMENT)
	}
	if f.ReadErr != nil {
		return zero, f.ReadErr
	}
	return read(&f.Devices[i])
}

func (f *Fake) UUID(i int) (string, error) {
	return get(f, i, func(d *FakeDevice) (string, error) { return d.UUID, nil })
}

func (f *Fake) Name(i int) (string, error) {
	return get(f, i, func(d *FakeDevice) (string, error) { return d.Name, nil })
}

func (f *Fake) MemoryInfo(i int) (Memory, error) {
	return get(f, i, func(d *FakeDevice) (Memory, error) { return d.Memory, nil })
}

func (f *Fake) UtilizationRates(i int) (Utilization, error) {
	return get(f, i, func(d *FakeDevice) (Utilization, error) {
		if d.NotSupported {
			return Utilization{}, ERROR_NOT_SUPPORTED
		}
		return d.Utilization, nil
	})
}

func (f *Fake) Temperature(i int) (uint32, error) {
	return get(f, i, func(d *FakeDevice) (uint32, error) {
		if d.NotSupported {
			return 0, ERROR_NOT_SUPPORTED
		}
		return d.Temperature, nil
	})
}

func (f *Fake) ComputeRunningProcesses(i int) ([]ProcessInfo, error) {
	return get(f, i, func(d *FakeDevice) ([]ProcessInfo, error) { return slices.Clone(d.Compute), nil })
}

func (f *Fake) GraphicsRunningProcesses(i int) ([]ProcessInfo, error) {
	return get(f, i, func(d *FakeDevice) ([]ProcessInfo, error) { return slices.Clone(d.Graphics), nil })
}
