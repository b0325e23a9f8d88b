//go:build linux && cgo

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// NVML's types, as nvml.h declares them: nvmlReturn_t is an enum,
// nvmlDevice_t an opaque pointer.
typedef int gs_ret;
typedef void *gs_device;
typedef struct { unsigned long long total, free, used; } gs_memory;
typedef struct { unsigned int gpu, memory; } gs_utilization;
typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId, computeInstanceId;
} gs_process; // nvmlProcessInfo_t (v2 and v3 of the calls)

_Static_assert(sizeof(gs_memory) == 24, "nvmlMemory_t");
_Static_assert(sizeof(gs_utilization) == 8, "nvmlUtilization_t");
_Static_assert(sizeof(gs_process) == 24, "nvmlProcessInfo_t");

// gs_nvml holds the functions the agent calls, resolved with dlsym, so
// the binary has no undefined NVML symbol for the loader to trip on.
typedef struct {
	void *handle;
	gs_ret (*init)(void);
	gs_ret (*shutdown)(void);
	gs_ret (*driver_version)(char *, unsigned int);
	gs_ret (*count)(unsigned int *);
	gs_ret (*by_index)(unsigned int, gs_device *);
	gs_ret (*uuid)(gs_device, char *, unsigned int);
	gs_ret (*name)(gs_device, char *, unsigned int);
	gs_ret (*memory)(gs_device, gs_memory *);
	gs_ret (*utilization)(gs_device, gs_utilization *);
	gs_ret (*temperature)(gs_device, int, unsigned int *);
	gs_ret (*compute)(gs_device, unsigned int *, gs_process *);
	gs_ret (*graphics)(gs_device, unsigned int *, gs_process *);
} gs_nvml;

// gs_open loads the library and resolves every function, preferring the
// newest versions (as nvml.h's #defines do) and falling back to those of
// drivers since R450. It returns 0, or NVML_ERROR_LIBRARY_NOT_FOUND (12)
// or NVML_ERROR_FUNCTION_NOT_FOUND (13) with *err (malloc'ed) saying why.
static int gs_open(const char *path, gs_nvml **out, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		*err = strdup(e ? e : "dlopen failed");
		return 12;
	}
	gs_nvml *n = calloc(1, sizeof *n);
	if (!n) {
		*err = strdup("out of memory");
		dlclose(h);
		return 12;
	}
	n->handle = h;
	struct { void **slot; const char *names[3]; } syms[] = {
		{(void **)&n->init, {"nvmlInit_v2", NULL}},
		{(void **)&n->shutdown, {"nvmlShutdown", NULL}},
		{(void **)&n->driver_version, {"nvmlSystemGetDriverVersion", NULL}},
		{(void **)&n->count, {"nvmlDeviceGetCount_v2", NULL}},
		{(void **)&n->by_index, {"nvmlDeviceGetHandleByIndex_v2", NULL}},
		{(void **)&n->uuid, {"nvmlDeviceGetUUID", NULL}},
		{(void **)&n->name, {"nvmlDeviceGetName", NULL}},
		{(void **)&n->memory, {"nvmlDeviceGetMemoryInfo", NULL}},
		{(void **)&n->utilization, {"nvmlDeviceGetUtilizationRates", NULL}},
		{(void **)&n->temperature, {"nvmlDeviceGetTemperature", NULL}},
		{(void **)&n->compute, {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2", NULL}},
		{(void **)&n->graphics, {"nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2", NULL}},
	};
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		for (int j = 0; syms[i].names[j] && !*syms[i].slot; j++) {
			*syms[i].slot = dlsym(h, syms[i].names[j]);
		}
		if (!*syms[i].slot) {
			const char *prefix = "the library has no ";
			*err = malloc(strlen(prefix) + strlen(syms[i].names[0]) + 1);
			if (*err) {
				strcpy(*err, prefix);
				strcat(*err, syms[i].names[0]);
			}
			free(n);
			dlclose(h);
			return 13;
		}
	}
	*out = n;
	return 0;
}

static gs_ret gs_init(gs_nvml *n) { return n->init(); }
static gs_ret gs_shutdown(gs_nvml *n) { return n->shutdown(); }
static gs_ret gs_driver_version(gs_nvml *n, char *buf, unsigned int len) { return n->driver_version(buf, len); }
static gs_ret gs_count(gs_nvml *n, unsigned int *c) { return n->count(c); }
static gs_ret gs_by_index(gs_nvml *n, unsigned int i, gs_device *d) { return n->by_index(i, d); }
static gs_ret gs_uuid(gs_nvml *n, gs_device d, char *buf, unsigned int len) { return n->uuid(d, buf, len); }
static gs_ret gs_name(gs_nvml *n, gs_device d, char *buf, unsigned int len) { return n->name(d, buf, len); }
static gs_ret gs_memory_info(gs_nvml *n, gs_device d, gs_memory *m) { return n->memory(d, m); }
static gs_ret gs_utilization_rates(gs_nvml *n, gs_device d, gs_utilization *u) { return n->utilization(d, u); }
static gs_ret gs_temperature(gs_nvml *n, gs_device d, unsigned int *t) { return n->temperature(d, 0, t); } // NVML_TEMPERATURE_GPU
static gs_ret gs_processes(gs_nvml *n, gs_device d, int graphics, unsigned int *c, gs_process *p) {
	return graphics ? n->graphics(d, c, p) : n->compute(d, c, p);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Buffer sizes from nvml.h (NVML_DEVICE_*_V2_BUFFER_SIZE,
// NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE).
const (
	nameBufferSize    = 96
	versionBufferSize = 80
)

// cNVML is NVML through its C API. The library is dlopened on the first
// Init and its functions resolved with dlsym; it stays loaded, so a later
// Init after Shutdown (NVML lost and found again) is cheap. Init and
// Shutdown must not run concurrently with reads; the agent serialises them.
type cNVML struct {
	path    string
	lib     *C.gs_nvml
	up      bool // between a successful Init and Shutdown
	devices []C.gs_device
}

// NewNVML returns the real NVML, loaded from libraryPath on Init (empty:
// DefaultLibrary from the loader's search path). Nothing is loaded before
// Init, so the binary starts on machines without the library.
func NewNVML(libraryPath string) NVML {
	if libraryPath == "" {
		libraryPath = DefaultLibrary
	}
	return &cNVML{path: libraryPath}
}

func (n *cNVML) Init() error {
	if n.lib == nil {
		path := C.CString(n.path)
		defer C.free(unsafe.Pointer(path))
		var lib *C.gs_nvml
		var cerr *C.char
		if code := Return(C.gs_open(path, &lib, &cerr)); code != SUCCESS {
			msg := C.GoString(cerr)
			C.free(unsafe.Pointer(cerr))
			if code == ERROR_FUNCTION_NOT_FOUND {
				msg = n.path + ": " + msg
			}
			return &UnavailableError{Reason: "cannot load the NVML library: " + msg, Fix: fixFor(code), Err: code}
		}
		n.lib = lib
	}
	if ret := Return(C.gs_init(n.lib)); ret != SUCCESS {
		return &UnavailableError{Reason: "nvmlInit: " + ret.Error(), Fix: fixFor(ret), Err: ret}
	}
	var count C.uint
	if ret := Return(C.gs_count(n.lib, &count)); ret != SUCCESS {
		_ = C.gs_shutdown(n.lib)
		return &UnavailableError{Reason: "counting GPUs: " + ret.Error(), Fix: fixFor(ret), Err: ret}
	}
	devices := make([]C.gs_device, int(count))
	for i := range devices {
		if ret := Return(C.gs_by_index(n.lib, C.uint(i), &devices[i])); ret != SUCCESS {
			_ = C.gs_shutdown(n.lib)
			return &UnavailableError{Reason: fmt.Sprintf("opening GPU %d: %v", i, ret), Fix: fixFor(ret), Err: ret}
		}
	}
	n.devices, n.up = devices, true
	return nil
}

func (n *cNVML) Shutdown() error {
	if !n.up {
		return ERROR_UNINITIALIZED
	}
	n.devices, n.up = nil, false
	return check(C.gs_shutdown(n.lib))
}

func (n *cNVML) DriverVersion() (string, error) {
	if !n.up {
		return "", ERROR_UNINITIALIZED
	}
	buf := make([]byte, versionBufferSize)
	if err := check(C.gs_driver_version(n.lib, (*C.char)(unsafe.Pointer(&buf[0])), versionBufferSize)); err != nil {
		return "", err
	}
	return cString(buf), nil
}

func (n *cNVML) DeviceCount() (int, error) {
	if !n.up {
		return 0, ERROR_UNINITIALIZED
	}
	return len(n.devices), nil
}

func (n *cNVML) device(i int) (C.gs_device, error) {
	if !n.up {
		return nil, ERROR_UNINITIALIZED
	}
	if i < 0 || i >= len(n.devices) {
		return nil, fmt.Errorf("no GPU %d (NVML lists %d): %w", i, len(n.devices), ERROR_INVALID_ARGUMENT)
	}
	return n.devices[i], nil
}

// text reads one of NVML's NUL-terminated strings.
func (n *cNVML) text(i int, get func(*C.gs_nvml, C.gs_device, *C.char, C.uint) C.gs_ret) (string, error) {
	d, err := n.device(i)
	if err != nil {
		return "", err
	}
	buf := make([]byte, nameBufferSize)
	if err := check(get(n.lib, d, (*C.char)(unsafe.Pointer(&buf[0])), nameBufferSize)); err != nil {
		return "", err
	}
	return cString(buf), nil
}

func (n *cNVML) UUID(i int) (string, error) {
	return n.text(i, func(l *C.gs_nvml, d C.gs_device, b *C.char, s C.uint) C.gs_ret { return C.gs_uuid(l, d, b, s) })
}

func (n *cNVML) Name(i int) (string, error) {
	return n.text(i, func(l *C.gs_nvml, d C.gs_device, b *C.char, s C.uint) C.gs_ret { return C.gs_name(l, d, b, s) })
}

// query runs one device query that fills a C value, and converts it.
func query[CT, T any](n *cNVML, i int, get func(*C.gs_nvml, C.gs_device, *CT) C.gs_ret, conv func(*CT) T) (T, error) {
	var zero T
	d, err := n.device(i)
	if err != nil {
		return zero, err
	}
	var c CT
	if err := check(get(n.lib, d, &c)); err != nil {
		return zero, err
	}
	return conv(&c), nil
}

func (n *cNVML) MemoryInfo(i int) (Memory, error) {
	return query(n, i,
		func(l *C.gs_nvml, d C.gs_device, m *C.gs_memory) C.gs_ret { return C.gs_memory_info(l, d, m) },
		func(m *C.gs_memory) Memory {
			return Memory{Total: uint64(m.total), Free: uint64(m.free), Used: uint64(m.used)}
		})
}

func (n *cNVML) UtilizationRates(i int) (Utilization, error) {
	return query(n, i,
		func(l *C.gs_nvml, d C.gs_device, u *C.gs_utilization) C.gs_ret {
			return C.gs_utilization_rates(l, d, u)
		},
		func(u *C.gs_utilization) Utilization {
			return Utilization{Gpu: uint32(u.gpu), Memory: uint32(u.memory)}
		})
}

func (n *cNVML) Temperature(i int) (uint32, error) {
	return query(n, i,
		func(l *C.gs_nvml, d C.gs_device, t *C.uint) C.gs_ret { return C.gs_temperature(l, d, t) },
		func(t *C.uint) uint32 { return uint32(*t) })
}

func (n *cNVML) ComputeRunningProcesses(i int) ([]ProcessInfo, error) {
	return n.processes(i, 0)
}

func (n *cNVML) GraphicsRunningProcesses(i int) ([]ProcessInfo, error) {
	return n.processes(i, 1)
}

// processes grows the buffer while NVML says it is too small: processes
// can start between two calls.
func (n *cNVML) processes(i int, graphics C.int) ([]ProcessInfo, error) {
	d, err := n.device(i)
	if err != nil {
		return nil, err
	}
	size := C.uint(32)
	for range 8 {
		buf := make([]C.gs_process, size)
		count := size
		ret := Return(C.gs_processes(n.lib, d, graphics, &count, &buf[0]))
		switch ret {
		case SUCCESS:
			out := make([]ProcessInfo, int(count))
			for j := range out {
				p := &buf[j]
				out[j] = ProcessInfo{Pid: uint32(p.pid), UsedGpuMemory: uint64(p.usedGpuMemory),
					GpuInstanceId: uint32(p.gpuInstanceId), ComputeInstanceId: uint32(p.computeInstanceId)}
			}
			return out, nil
		case ERROR_INSUFFICIENT_SIZE:
			size = max(count, size) * 2
		default:
			return nil, ret
		}
	}
	return nil, fmt.Errorf("listing processes: the count kept growing: %w", ERROR_INSUFFICIENT_SIZE)
}

func check(ret C.gs_ret) error {
	if r := Return(ret); r != SUCCESS {
		return r
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
