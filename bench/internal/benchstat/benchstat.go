// Package benchstat is what every benchmark in bench/ reports the same
// way: the machine it ran on, and nearest-rank percentiles.
package benchstat

import (
	"cmp"
	"context"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmark ran: Go version, platform, CPUs,
// GOMAXPROCS and the CPU model.
func Machine() map[string]string {
	return map[string]string{"go": runtime.Version(), "goos/goarch": runtime.GOOS + "/" + runtime.GOARCH,
		"gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0)), "cpus": strconv.Itoa(runtime.NumCPU()), "cpu": CPUModel()}
}

// CPUModel is the first "model name" of /proc/cpuinfo, "unknown" without.
func CPUModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 1) of sorted,
// which must not be empty.
func Percentile[T cmp.Ordered](sorted []T, p float64) T {
	return sorted[max(0, int(math.Ceil(p*float64(len(sorted))))-1)]
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
