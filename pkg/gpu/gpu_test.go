package gpu

import (
	"errors"
	"testing"
)

func initialized(t *testing.T, f *Fake) *Fake {
	t.Helper()
	if err := f.Init(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReadRecorded(t *testing.T) {
	snap, err := Read(initialized(t, RecordedRTX3080Ti()))
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.GPUs) != 1 {
		t.Fatalf("%d GPUs, want 1", len(snap.GPUs))
	}
	g := snap.GPUs[0]
	if g.UUID != RecordedUUID || g.Model != RecordedModel || g.Index != 0 {
		t.Errorf("identity %d %q %q", g.Index, g.UUID, g.Model)
	}
	if g.Memory.Total != 12288<<20 || g.Memory.Used+g.Memory.Free != g.Memory.Total {
		t.Errorf("memory %+v: want 12288 MiB total, used+free = total", g.Memory)
	}
	if g.Utilization == nil || g.Utilization.Gpu != 37 || g.TemperatureC == nil || *g.TemperatureC != 61 {
		t.Errorf("utilization %v temperature %v", g.Utilization, g.TemperatureC)
	}
	want := []Process{
		{PID: RecordedPIDXorg, UsedMemoryBytes: RecordedXorgBytes, Graphics: true},
		{PID: RecordedPIDTTS, UsedMemoryBytes: RecordedTTSBytes, Compute: true},
		{PID: RecordedPIDPlex, UsedMemoryBytes: RecordedPlexBytes, Compute: true, Graphics: true},
		{PID: RecordedPIDVLLM, UsedMemoryBytes: RecordedVLLMBytes, Compute: true},
	}
	if len(g.Processes) != len(want) {
		t.Fatalf("processes %+v, want %+v", g.Processes, want)
	}
	var sum uint64
	for i := range want {
		if g.Processes[i] != want[i] {
			t.Errorf("process %d: %+v, want %+v", i, g.Processes[i], want[i])
		}
		sum += g.Processes[i].UsedMemoryBytes
	}
	if sum > g.Memory.Used {
		t.Errorf("processes hold %d bytes, more than the %d used", sum, g.Memory.Used)
	}
}

func TestReadNotSupportedAndUnavailableValues(t *testing.T) {
	f := RecordedRTX3080Ti()
	f.Devices[0].NotSupported = true
	f.Devices[0].Compute = append(f.Devices[0].Compute, ProcessInfo{Pid: 7, UsedGpuMemory: ^uint64(0)})
	snap, err := Read(initialized(t, f))
	if err != nil {
		t.Fatal(err)
	}
	g := snap.GPUs[0]
	if g.Utilization != nil || g.TemperatureC != nil {
		t.Errorf("not supported: utilization %v temperature %v, want nil", g.Utilization, g.TemperatureC)
	}
	if p := g.Processes[0]; p.PID != 7 || p.UsedMemoryBytes != 0 {
		t.Errorf("VALUE_NOT_AVAILABLE memory: %+v, want 0", p)
	}
}

func TestReadUninitialized(t *testing.T) {
	_, err := Read(RecordedRTX3080Ti())
	if !errors.Is(err, ERROR_UNINITIALIZED) || !IsFatal(err) {
		t.Errorf("read before Init: %v (fatal %v), want ERROR_UNINITIALIZED, fatal", err, IsFatal(err))
	}
	if IsFatal(errors.New("GPU 0: reading temperature: " + ERROR_TIMEOUT.Error())) {
		t.Error("a timeout is not fatal")
	}
}

func TestFakeInitErrorsThenSuccess(t *testing.T) {
	f := RecordedRTX3080Ti()
	f.InitErrors = []error{ERROR_DRIVER_NOT_LOADED}
	if err := f.Init(); !errors.Is(err, ERROR_DRIVER_NOT_LOADED) {
		t.Fatalf("first Init: %v", err)
	}
	if err := f.Init(); err != nil || f.Inits != 2 {
		t.Fatalf("second Init: %v after %d", err, f.Inits)
	}
	c := f.Clone()
	c.Devices[0].Compute[0].Pid = 1
	if f.Devices[0].Compute[0].Pid == 1 {
		t.Error("Clone shares process slices")
	}
}
