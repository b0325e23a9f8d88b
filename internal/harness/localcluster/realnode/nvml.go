package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/internal/standin/nvmltest"
)

// FakeNVML is the node's stand-in NVIDIA driver: the stand-in
// libnvidia-ml.so.1 in state mode, whose processes are the real
// processes registered in State. Its folder is mounted at the same path
// in the pods that use it (Volume), where the NVIDIA container runtime
// would mount the driver's library on a GPU node.
type FakeNVML struct {
	// Dir holds the library, the state file and the registration socket.
	Dir string
	// Library is libnvidia-ml.so.1, for the agent's --nvml-library.
	Library string
	// Socket is where GPU workloads register (testbox gpu).
	Socket string
	State  *nvmltest.State

	registrar *nvmltest.Registrar
}

func startFakeNVML(ctx context.Context, dir string) (*FakeNVML, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the stand-in NVML's folder: %w", err)
	}
	f := &FakeNVML{Dir: dir, Library: filepath.Join(dir, "libnvidia-ml.so.1"), Socket: filepath.Join(dir, "register.sock")}
	state := filepath.Join(dir, "processes")
	if err := nvmltest.Build(ctx, f.Library, state); err != nil {
		return nil, err
	}
	var err error
	if f.State, err = nvmltest.NewState(state); err != nil {
		return nil, err
	}
	if f.registrar, err = nvmltest.ServeRegistrar(f.Socket, f.State); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FakeNVML) stop() {
	if f != nil && f.registrar != nil {
		_ = f.registrar.Close()
	}
}

// fakeNVMLVolume is the name of the volume Mount adds.
const fakeNVMLVolume = "fake-nvml"

// Mount makes the pod see the stand-in driver's folder, read-only unless
// the container registers GPU processes (writable: the socket).
func (f *FakeNVML) Mount(spec *corev1.PodSpec, container string, writable bool) {
	hostPathType := corev1.HostPathDirectory
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: fakeNVMLVolume, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: f.Dir, Type: &hostPathType},
	}})
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if c.Name != container {
			continue
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: fakeNVMLVolume, MountPath: f.Dir, ReadOnly: !writable})
		if writable {
			c.Env = append(c.Env, corev1.EnvVar{Name: nvmltest.EnvSocket, Value: f.Socket})
		}
	}
}
