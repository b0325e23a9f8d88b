package gpu

import "errors"

// DefaultLibrary is the NVML library dlopened when no path is given: the
// NVIDIA container runtime mounts it into pods of runtimeClassName nvidia.
const DefaultLibrary = "libnvidia-ml.so.1"

// UnavailableError says why NVML cannot be used on this node and what
// fixes it. It wraps the Return when NVML gave one.
type UnavailableError struct {
	Reason string
	Fix    string
	Err    error
}

func (e *UnavailableError) Error() string { return "NVML unavailable: " + e.Reason + "; " + e.Fix }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Fixes for the ways NVML fails to start, as an operator would apply them.
const (
	fixLibrary = "run the agent with runtimeClassName: nvidia and NVIDIA_VISIBLE_DEVICES=all so the NVIDIA container runtime mounts the driver's libraries, " +
		"or mount the host's libnvidia-ml.so.1 and pass --nvml-library; keep the DaemonSet off nodes without a GPU (nodeSelector nvidia.com/gpu.present: \"true\")"
	fixDriver     = "load the NVIDIA kernel driver on the node (nvidia-smi on the host must work) and check the DaemonSet only runs on GPU nodes"
	fixPermission = "the agent cannot open /dev/nvidiactl or /dev/nvidia*: run it with runtimeClassName: nvidia and NVIDIA_VISIBLE_DEVICES=all, or mount the device nodes"
	fixMismatch   = "the NVML library does not match the loaded kernel driver (driver upgraded without a reboot?): reboot the node, or mount the library of the running driver"
	fixOld        = "the driver's NVML lacks a function the agent needs (driver older than R450?): upgrade the NVIDIA driver"
	fixOther      = "check the NVIDIA driver on the node with nvidia-smi"
)

func fixFor(ret Return) string {
	switch ret {
	case ERROR_LIBRARY_NOT_FOUND:
		return fixLibrary
	case ERROR_FUNCTION_NOT_FOUND:
		return fixOld
	case ERROR_DRIVER_NOT_LOADED:
		return fixDriver
	case ERROR_NO_PERMISSION:
		return fixPermission
	case ERROR_LIB_RM_VERSION_MISMATCH:
		return fixMismatch
	}
	return fixOther
}

// AsUnavailable returns err's UnavailableError, or wraps any other error in
// one, so callers always have a reason and a fix to show.
func AsUnavailable(err error) *UnavailableError {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue
	}
	fix := fixOther
	var ret Return
	if errors.As(err, &ret) {
		fix = fixFor(ret)
	}
	return &UnavailableError{Reason: err.Error(), Fix: fix, Err: err}
}
