package cgroup

import (
	"errors"
	"testing"
)

const (
	uid = "3f1c2a7e-9b4d-4e2f-8a61-5c0d7e9b2a14"
	cid = "8c2f4e1a9b7d3c6e5f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a"
)

// TestReadPIDLayouts reads testdata/proc, one process per layout.
func TestReadPIDLayouts(t *testing.T) {
	for _, tc := range []struct {
		pid    uint32
		layout string
		want   Ref
		inPod  bool
	}{
		{101, "v2 systemd containerd burstable (K3s, systemd driver)", Ref{uid, cid, "containerd", QoSBurstable}, true},
		{102, "v2 systemd containerd guaranteed", Ref{uid, cid, "containerd", QoSGuaranteed}, true},
		{103, "v2 systemd containerd besteffort", Ref{uid, cid, "containerd", QoSBestEffort}, true},
		{104, "v2 cgroupfs burstable (K3s default)", Ref{uid, cid, "", QoSBurstable}, true},
		{105, "v2 cgroupfs guaranteed", Ref{uid, cid, "", QoSGuaranteed}, true},
		{106, "v1 cgroupfs, every controller", Ref{uid, cid, "", QoSBestEffort}, true},
		{107, "v1 systemd docker", Ref{uid, cid, "docker", QoSBurstable}, true},
		{108, "v2 systemd CRI-O", Ref{uid, cid, "crio", QoSBurstable}, true},
		{109, "v2 seen from another cgroup namespace", Ref{uid, cid, "containerd", QoSBestEffort}, true},
		{110, "host daemon", Ref{}, false},
		{111, "host user session", Ref{}, false},
		{112, "docker container outside Kubernetes", Ref{}, false},
		{113, "static pod (config hash UID)", Ref{"6c3e3f1bd2a94d0e8a7b5c4d3e2f1a0b", cid, "", QoSBurstable}, true},
		{114, "CRI-O conmon: pod, no container", Ref{uid, "", "", QoSBurstable}, true},
		{115, "cgroupfs CRI-O", Ref{uid, cid, "crio", QoSBurstable}, true},
		{116, "nested cgroup inside the container", Ref{uid, cid, "containerd", QoSBurstable}, true},
		{117, "cgroupfs seen from another cgroup namespace", Ref{uid, cid, "", QoSBurstable}, true},
		{118, "root cgroup", Ref{}, false},
	} {
		t.Run(tc.layout, func(t *testing.T) {
			got, ok, err := ReadPID("testdata/proc", tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.inPod || got != tc.want {
				t.Errorf("pid %d: %+v in pod %v, want %+v in pod %v", tc.pid, got, ok, tc.want, tc.inPod)
			}
		})
	}
}

func TestReadPIDMissing(t *testing.T) {
	_, _, err := ReadPID("testdata/proc", 4242)
	if !errors.Is(err, ErrNoProcess) {
		t.Errorf("missing pid: %v, want ErrNoProcess", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, content := range []string{
		"",
		"garbage",
		"0::/kubepods/burstable/podnot-a-uid/" + cid,
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice",
		"0::/system.slice/podman-" + uid + ".scope",
		"0::/machine.slice/libpod-pod" + uid + ".slice",
	} {
		if ref, ok := Parse([]byte(content)); ok {
			t.Errorf("%q: parsed as %+v", content, ref)
		}
	}
	// A bad container segment leaves the pod known.
	ref, ok := Parse([]byte("0::/kubepods/pod" + uid + "/not-a-container"))
	if !ok || ref.PodUID != uid || ref.ContainerID != "" {
		t.Errorf("bad container segment: %+v %v", ref, ok)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a7e_9b4d_4e2f_8a61_5c0d7e9b2a14.slice/cri-containerd-" + cid + ".scope\n"))
	f.Add([]byte("12:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n0::/\n"))
	f.Add([]byte("0::/../../kubepods-pod" + uid + ".slice/x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, ok := Parse(b)
		if !ok && ref != (Ref{}) {
			t.Errorf("not in a pod but %+v", ref)
		}
		if ok && !validUID(ref.PodUID) {
			t.Errorf("invalid UID %q", ref.PodUID)
		}
		if ref.ContainerID != "" && len(ref.ContainerID) != 64 {
			t.Errorf("container ID %q", ref.ContainerID)
		}
	})
}
