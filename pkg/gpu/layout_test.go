//go:build cgo

package gpu

import (
	"reflect"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// TestTypesMatchGoNVML: this package's NVML types are NVIDIA's, field for
// field, as go-nvml generates them from nvml.h. go-nvml is linked into
// this test only (see types.go for why not into the binary).
func TestTypesMatchGoNVML(t *testing.T) {
	for _, pair := range [][2]any{
		{Memory{}, nvml.Memory{}},
		{Utilization{}, nvml.Utilization{}},
		{ProcessInfo{}, nvml.ProcessInfo{}},
	} {
		ours, theirs := reflect.TypeOf(pair[0]), reflect.TypeOf(pair[1])
		if ours.Size() != theirs.Size() || ours.NumField() != theirs.NumField() {
			t.Errorf("%v: %d bytes, %d fields; nvml.%s: %d bytes, %d fields", ours, ours.Size(), ours.NumField(), theirs.Name(), theirs.Size(), theirs.NumField())
			continue
		}
		for i := range ours.NumField() {
			a, b := ours.Field(i), theirs.Field(i)
			if a.Name != b.Name || a.Type.Kind() != b.Type.Kind() || a.Offset != b.Offset {
				t.Errorf("%v.%s (%v at %d) vs nvml.%s.%s (%v at %d)", ours, a.Name, a.Type, a.Offset, theirs.Name(), b.Name, b.Type, b.Offset)
			}
		}
	}
	for ours, name := range returnNames {
		if int32(ours) != int32(nvmlReturn(name)) {
			t.Errorf("%s: %d here, %d in go-nvml", name, ours, nvmlReturn(name))
		}
	}
}

func nvmlReturn(name string) nvml.Return {
	for r := nvml.Return(0); r < 1000; r++ {
		if r.String() == name {
			return r
		}
	}
	return -1
}

// TestFixtureConvertsToGoNVML: the recorded fixture, read as go-nvml's
// types, is the same bytes.
func TestFixtureConvertsToGoNVML(t *testing.T) {
	d := RecordedRTX3080Ti().Devices[0]
	m := nvml.Memory(d.Memory)
	u := nvml.Utilization(d.Utilization)
	if m.Total != 12288<<20 || m.Used+m.Free != m.Total || u.Gpu != 37 {
		t.Errorf("%+v %+v", m, u)
	}
	for _, p := range d.Compute {
		if q := nvml.ProcessInfo(p); q.Pid != p.Pid || q.UsedGpuMemory != p.UsedGpuMemory {
			t.Errorf("%+v vs %+v", p, q)
		}
	}
}
