//go:build linux && cgo

package gpu

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
)

// fakeLibrary compiles the stand-in libnvidia-ml.so.1 (nvmltest).
func fakeLibrary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if _, err := exec.LookPath("cc"); err != nil {
			t.Skip("no C compiler to build the stand-in NVML library")
		}
	}
	lib := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	if err := nvmltest.Build(context.Background(), lib, ""); err != nil {
		t.Fatal(err)
	}
	return lib
}

// TestCBindingReadsLikeTheFixture runs the real binding against a
// stand-in libnvidia-ml.so.1 that answers with recorded.go's values: both
// paths must read the same snapshot.
func TestCBindingReadsLikeTheFixture(t *testing.T) {
	lib := NewNVML(fakeLibrary(t))
	if _, err := lib.UUID(0); !errors.Is(err, ERROR_UNINITIALIZED) {
		t.Errorf("read before Init: %v", err)
	}
	if err := lib.Init(); err != nil {
		t.Fatal(err)
	}
	got, err := Read(lib)
	if err != nil {
		t.Fatal(err)
	}
	fake := RecordedRTX3080Ti()
	if err := fake.Init(); err != nil {
		t.Fatal(err)
	}
	want, err := Read(fake)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("through the C binding:\n%+v\nfrom the fixture:\n%+v", got, want)
	}
	if v, err := lib.DriverVersion(); err != nil || v != RecordedDriverVersion {
		t.Errorf("driver %q %v", v, err)
	}
	if _, err := lib.MemoryInfo(1); !errors.Is(err, ERROR_INVALID_ARGUMENT) {
		t.Errorf("GPU 1 of 1: %v", err)
	}
	if err := lib.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(lib); !IsFatal(err) {
		t.Errorf("read after Shutdown: %v, want fatal", err)
	}
	// NVML found again after a loss: Init works on the loaded library.
	if err := lib.Init(); err != nil {
		t.Fatalf("Init after Shutdown: %v", err)
	}
	if _, err := Read(lib); err != nil {
		t.Fatal(err)
	}
}

func TestCBindingInitFailure(t *testing.T) {
	path := fakeLibrary(t)
	t.Setenv("GPUSLICE_FAKE_NVML_INIT", "9") // NVML_ERROR_DRIVER_NOT_LOADED
	err := NewNVML(path).Init()
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ERROR_DRIVER_NOT_LOADED) || !strings.Contains(ue.Fix, "load the NVIDIA kernel driver") {
		t.Errorf("driver not loaded: %v", err)
	}
}

// TestCBindingNotNVML: a library that is not NVML (libc) is refused with
// the missing function named.
func TestCBindingNotNVML(t *testing.T) {
	err := NewNVML("libc.so.6").Init()
	if !errors.Is(err, ERROR_FUNCTION_NOT_FOUND) || !strings.Contains(err.Error(), "libc.so.6: the library has no nvmlInit_v2") {
		t.Errorf("libc as NVML: %v", err)
	}
}

// TestRealNVMLWithoutLibrary runs the real binding. On a machine without
// the NVIDIA driver, Init must fail with the loader's reason and a fix
// instead of crashing; on a GPU machine there is nothing to check here.
func TestRealNVMLWithoutLibrary(t *testing.T) {
	lib := NewNVML("")
	err := lib.Init()
	if err == nil {
		_ = lib.Shutdown()
		t.Skip("NVML works on this machine; see nvml_gpu_test.go (-tags gpu)")
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("Init: %T %v, want *UnavailableError", err, err)
	}
	if !strings.Contains(ue.Reason, DefaultLibrary) || !strings.Contains(ue.Fix, "runtimeClassName: nvidia") {
		t.Errorf("reason %q fix %q: want the library name and the runtime class fix", ue.Reason, ue.Fix)
	}
	if !errors.Is(err, ERROR_LIBRARY_NOT_FOUND) || !IsFatal(err) {
		t.Errorf("%v: want ERROR_LIBRARY_NOT_FOUND", err)
	}
	t.Logf("real NVML here: %v", err)

	custom := NewNVML("/nonexistent/libnvidia-ml.so.1")
	err = custom.Init()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/libnvidia-ml.so.1: cannot open shared object file") {
		t.Errorf("custom path: %v, want the loader's message naming the path", err)
	}
	// Reads before a successful Init fail cleanly.
	if _, err := custom.UUID(0); err == nil {
		t.Error("UUID without Init succeeded")
	}
}
