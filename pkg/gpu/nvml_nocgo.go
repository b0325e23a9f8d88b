//go:build !linux || !cgo

package gpu

// NewNVML, in a build without cgo or not for Linux, returns an NVML that
// never starts: the agent then serves and says why.
func NewNVML(string) NVML { return noNVML{} }

type noNVML struct{}

var errNoCgo = &UnavailableError{
	Reason: "this gpuslice binary cannot load NVML: it was built without cgo (CGO_ENABLED=0) or not for Linux",
	Fix:    "run the agent from a Linux build with cgo (go build with CGO_ENABLED=1, the default where gcc is installed)",
	Err:    ERROR_LIBRARY_NOT_FOUND,
}

func (noNVML) Init() error                               { return errNoCgo }
func (noNVML) Shutdown() error                           { return ERROR_UNINITIALIZED }
func (noNVML) DriverVersion() (string, error)            { return "", ERROR_UNINITIALIZED }
func (noNVML) DeviceCount() (int, error)                 { return 0, ERROR_UNINITIALIZED }
func (noNVML) UUID(int) (string, error)                  { return "", ERROR_UNINITIALIZED }
func (noNVML) Name(int) (string, error)                  { return "", ERROR_UNINITIALIZED }
func (noNVML) MemoryInfo(int) (Memory, error)            { return Memory{}, ERROR_UNINITIALIZED }
func (noNVML) UtilizationRates(int) (Utilization, error) { return Utilization{}, ERROR_UNINITIALIZED }
func (noNVML) Temperature(int) (uint32, error)           { return 0, ERROR_UNINITIALIZED }
func (noNVML) ComputeRunningProcesses(int) ([]ProcessInfo, error) {
	return nil, ERROR_UNINITIALIZED
}
func (noNVML) GraphicsRunningProcesses(int) ([]ProcessInfo, error) {
	return nil, ERROR_UNINITIALIZED
}
