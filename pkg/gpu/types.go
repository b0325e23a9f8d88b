package gpu

import "fmt"

// NVML's C types, field for field (nvml.h: nvmlMemory_t, nvmlUtilization_t,
// nvmlProcessInfo_t, nvmlReturn_t). They match go-nvml's nvml.Memory,
// nvml.Utilization, nvml.ProcessInfo and nvml.Return, which
// layout_test.go checks. go-nvml itself is not linked into the binary: its
// bindings leave every NVML symbol undefined until libnvidia-ml.so.1 is
// dlopened, which fails to load in any binary marked BIND_NOW (as linking
// Go's plugin package does, golang/go#50500; NVIDIA/go-nvml#33, #18). Our
// binding resolves only what the agent calls. See docs/agent.md.

// Memory is nvmlMemory_t: framebuffer memory in bytes.
type Memory struct {
	Total uint64
	Free  uint64
	Used  uint64
}

// Utilization is nvmlUtilization_t: percent of the last sample period in
// which a kernel ran (Gpu) and the memory was read or written (Memory).
type Utilization struct {
	Gpu    uint32
	Memory uint32
}

// ProcessInfo is nvmlProcessInfo_t (v2/v3 of the running-processes calls).
type ProcessInfo struct {
	Pid           uint32
	UsedGpuMemory uint64
	// GpuInstanceId and ComputeInstanceId are 0xFFFFFFFF without MIG.
	GpuInstanceId     uint32
	ComputeInstanceId uint32
}

// Return is nvmlReturn_t. It is an error, compared with errors.Is.
type Return int32

// NVML's return codes that the agent tells apart (nvml.h).
const (
	SUCCESS                       Return = 0
	ERROR_UNINITIALIZED           Return = 1
	ERROR_INVALID_ARGUMENT        Return = 2
	ERROR_NOT_SUPPORTED           Return = 3
	ERROR_NO_PERMISSION           Return = 4
	ERROR_NOT_FOUND               Return = 6
	ERROR_INSUFFICIENT_SIZE       Return = 7
	ERROR_DRIVER_NOT_LOADED       Return = 9
	ERROR_TIMEOUT                 Return = 10
	ERROR_LIBRARY_NOT_FOUND       Return = 12
	ERROR_FUNCTION_NOT_FOUND      Return = 13
	ERROR_GPU_IS_LOST             Return = 15
	ERROR_LIB_RM_VERSION_MISMATCH Return = 18
	ERROR_UNKNOWN                 Return = 999
)

var returnNames = map[Return]string{
	SUCCESS:                       "SUCCESS",
	ERROR_UNINITIALIZED:           "ERROR_UNINITIALIZED",
	ERROR_INVALID_ARGUMENT:        "ERROR_INVALID_ARGUMENT",
	ERROR_NOT_SUPPORTED:           "ERROR_NOT_SUPPORTED",
	ERROR_NO_PERMISSION:           "ERROR_NO_PERMISSION",
	ERROR_NOT_FOUND:               "ERROR_NOT_FOUND",
	ERROR_INSUFFICIENT_SIZE:       "ERROR_INSUFFICIENT_SIZE",
	ERROR_DRIVER_NOT_LOADED:       "ERROR_DRIVER_NOT_LOADED",
	ERROR_TIMEOUT:                 "ERROR_TIMEOUT",
	ERROR_LIBRARY_NOT_FOUND:       "ERROR_LIBRARY_NOT_FOUND",
	ERROR_FUNCTION_NOT_FOUND:      "ERROR_FUNCTION_NOT_FOUND",
	ERROR_GPU_IS_LOST:             "ERROR_GPU_IS_LOST",
	ERROR_LIB_RM_VERSION_MISMATCH: "ERROR_LIB_RM_VERSION_MISMATCH",
	ERROR_UNKNOWN:                 "ERROR_UNKNOWN",
}

// Error names the code as nvml.h does, without the NVML_ prefix.
func (r Return) Error() string {
	if name, ok := returnNames[r]; ok {
		return name
	}
	return fmt.Sprintf("NVML error %d", int32(r))
}
