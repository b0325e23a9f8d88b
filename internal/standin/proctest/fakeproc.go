// Package proctest writes the part of a /proc tree the node agent reads
// (PID/cgroup), for tests, benchmarks and the end-to-end run, where the
// GPU processes NVML reports do not exist on the machine.
package proctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Write creates root/PID/cgroup with content.
func Write(root string, pid uint32, content string) error {
	dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating fake /proc entry: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing fake /proc entry: %w", err)
	}
	return nil
}

// Container is the cgroup v2 line of a container's process on K3s with the
// systemd cgroup driver and containerd, for a burstable pod.
func Container(podUID, containerID string) string {
	return "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(podUID, "-", "_") +
		".slice/cri-containerd-" + containerID + ".scope\n"
}

// Host is the cgroup v2 line of a host process in a systemd unit.
func Host(unit string) string {
	return "0::/system.slice/" + unit + "\n"
}

// ContainerID makes a runtime-style 64-hex container ID from a seed, so
// tests get stable, distinct IDs.
func ContainerID(seed uint32) string {
	return fmt.Sprintf("%064x", uint64(seed)*0x9e3779b97f4a7c15)
}
