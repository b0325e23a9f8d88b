package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// gpuWorkload registers this process with the stand-in NVML holding
// GPU_MEMORY_UTILIZATION of the GPU (as vLLM takes that fraction at
// start) or GPUSLICE_GPU_MIB, serves nvmltest.WorkloadPort, and exits on SIGTERM,
// which frees the memory as the driver would.
func gpuWorkload() error {
	mib, from, err := gpuMemory()
	if err != nil {
		return err
	}
	c, err := nvmltest.Register(os.Getenv(nvmltest.EnvSocket), mib)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("holding %d MiB of GPU memory (%s) as host PID %d\n", mib, from, c.HostPID)
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/pid", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, c.HostPID) })
	mux.HandleFunc("/memory", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			n, err := strconv.ParseUint(r.URL.Query().Get("mib"), 10, 64)
			if err != nil {
				http.Error(w, "want ?mib=N", http.StatusBadRequest)
				return
			}
			if err := c.Set(n); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			mib = n
		}
		fmt.Fprintln(w, mib)
	})
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(nvmltest.WorkloadPort))
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, mux) }()
	wait()
	return nil
}

// gpuMemory is the MiB to hold and where the number came from.
func gpuMemory() (uint64, string, error) {
	if v, ok := os.LookupEnv(workload.EnvGPUMemoryUtilization); ok {
		f, err := workload.ParseFraction(v)
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", workload.EnvGPUMemoryUtilization, err)
		}
		return uint64(math.Round(f * nvmltest.TotalMiB)), workload.EnvGPUMemoryUtilization + "=" + v, nil
	}
	if v, ok := os.LookupEnv(nvmltest.EnvWorkloadMiB); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("%s=%q: want MiB", nvmltest.EnvWorkloadMiB, v)
		}
		return n, nvmltest.EnvWorkloadMiB + "=" + v, nil
	}
	return 0, "", errors.New("set " + workload.EnvGPUMemoryUtilization + " or " + nvmltest.EnvWorkloadMiB)
}
