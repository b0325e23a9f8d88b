// Package cgroup finds the Kubernetes pod and container a process belongs
// to from its /proc/PID/cgroup, the way the kubelet and the container
// runtime named its cgroup: cgroup v1 and v2, the systemd and cgroupfs
// drivers, containerd (as K3s runs it), CRI-O and Docker.
//
// The layouts it reads, for pod UID 0d5f...-... and container ID <id>:
//
//	0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d5f..._....slice/cri-containerd-<id>.scope
//	0::/kubepods.slice/kubepods-pod0d5f....slice/crio-<id>.scope            (guaranteed QoS)
//	0::/kubepods/besteffort/pod0d5f...-.../<id>                              (cgroupfs: K3s's default)
//	12:memory:/kubepods/burstable/pod0d5f...-.../<id>                        (cgroup v1)
//	1:name=systemd:/kubepods.slice/.../docker-<id>.scope
//
// A reader in its own cgroup namespace (a container with cgroupns=private,
// the default on cgroup v2) sees other processes' paths relative to its
// own root, with leading /.. segments and the kubepods root cut off; the
// pod segment alone identifies the pod, so those parse too.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// QoS classes as the kubelet names their cgroups.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Ref is where a process sits in Kubernetes' cgroup tree.
type Ref struct {
	// PodUID is the pod's UID as the API server has it (dashes, not the
	// systemd driver's underscores). For a static pod it is the kubelet's
	// config hash, which the mirror pod carries in its
	// kubernetes.io/config.mirror annotation.
	PodUID string
	// ContainerID is the runtime's 64-hex container ID; empty when the
	// process sits in the pod's own cgroup.
	ContainerID string
	// Runtime is containerd, crio or docker when the cgroup name says so;
	// empty for the cgroupfs driver, which names containers by ID alone.
	Runtime string
	QoS     string
}

// Parse reads the content of a /proc/PID/cgroup file. ok is false when the
// process is not in a pod: a host daemon, a user session, or a container
// started outside Kubernetes.
func Parse(content []byte) (ref Ref, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain colons.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		r, found := parsePath(parts[2])
		if !found {
			continue
		}
		// On cgroup v1 every controller names the same pod; one that also
		// names the container is the better answer.
		if !ok || (ref.ContainerID == "" && r.ContainerID != "") {
			ref, ok = r, true
		}
	}
	return ref, ok
}

// parsePath finds the pod segment in one cgroup path and the container
// segment right below it.
func parsePath(path string) (Ref, bool) {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		r, ok := podSegment(seg, segs[:i])
		if !ok {
			continue
		}
		if i+1 < len(segs) {
			r.ContainerID, r.Runtime = containerSegment(segs[i+1])
		}
		return r, true
	}
	return Ref{}, false
}

// podSegment recognises "kubepods-burstable-pod<uid_>.slice",
// "kubepods-pod<uid_>.slice" (systemd) and "pod<uid>" (cgroupfs, whose QoS
// is the parent segment).
func podSegment(seg string, parents []string) (Ref, bool) {
	if name, ok := strings.CutSuffix(seg, ".slice"); ok {
		i := strings.LastIndex(name, "-pod")
		if i < 0 || !strings.HasPrefix(name, "kubepods") {
			return Ref{}, false
		}
		uid := strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
		if !validUID(uid) {
			return Ref{}, false
		}
		qos := QoSGuaranteed
		switch name[:i] {
		case "kubepods-burstable":
			qos = QoSBurstable
		case "kubepods-besteffort":
			qos = QoSBestEffort
		}
		return Ref{PodUID: uid, QoS: qos}, true
	}
	uid, ok := strings.CutPrefix(seg, "pod")
	if !ok || !validUID(uid) {
		return Ref{}, false
	}
	qos := QoSGuaranteed
	if n := len(parents); n > 0 {
		switch parents[n-1] {
		case QoSBurstable, QoSBestEffort:
			qos = parents[n-1]
		}
	}
	return Ref{PodUID: uid, QoS: qos}, true
}

// validUID accepts API server UIDs (8-4-4-4-12 hex) and static pods' 32-hex
// config hashes.
func validUID(s string) bool {
	switch len(s) {
	case 32:
		return isHex(s)
	case 36:
		for _, i := range []int{8, 13, 18, 23} {
			if s[i] != '-' {
				return false
			}
		}
		return isHex(strings.ReplaceAll(s, "-", ""))
	}
	return false
}

// Container cgroup names: "<prefix><id>.scope" under systemd, "<id>" or
// "crio-<id>" under cgroupfs.
var runtimePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"crio-", "crio"},
	{"docker-", "docker"},
}

func containerSegment(seg string) (id, runtime string) {
	seg = strings.TrimSuffix(seg, ".scope")
	for _, p := range runtimePrefixes {
		if rest, ok := strings.CutPrefix(seg, p.prefix); ok {
			seg, runtime = rest, p.runtime
			break
		}
	}
	// crio-conmon-<id> and other helpers are not containers.
	if len(seg) != 64 || !isHex(seg) {
		return "", ""
	}
	return seg, runtime
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// ErrNoProcess means /proc/PID does not exist: the process exited, or the
// reader is in another PID namespace than the PIDs it was given (an agent
// without hostPID: true).
var ErrNoProcess = errors.New("no such process")

// ReadPID reads and parses procRoot/PID/cgroup. Its errors wrap
// ErrNoProcess when the process is not there.
func ReadPID(procRoot string, pid uint32) (Ref, bool, error) {
	path := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Ref{}, false, fmt.Errorf("reading %s: %w", path, ErrNoProcess)
		}
		return Ref{}, false, fmt.Errorf("reading %s: %w", path, err)
	}
	ref, ok := Parse(b)
	return ref, ok, nil
}
