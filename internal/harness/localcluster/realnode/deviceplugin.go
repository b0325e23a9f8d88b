package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// FakeGPUUUID is the stand-in GPU's UUID, as NVML would report it.
const FakeGPUUUID = "GPU-5c3286fa-8173-c300-0000-3080ab120000"

// DevicePlugin stands in for NVIDIA's device plugin with time-slicing
// (renameByDefault, 8 replicas): it advertises nvidia.com/gpu.shared as
// replicated device IDs of one GPU (GPU-…::0 to ::7) through the kubelet's
// device-plugin API and answers Allocate with the environment the NVIDIA
// plugin gives. The kubelet's own accounting decides who gets a share.
type DevicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer
	// Resource is the advertised name; Replicas how many shares.
	Resource string
	Replicas int
	UUID     string

	socket string
	srv    *grpc.Server
	mu     sync.Mutex
	// allocated records every Allocate's device IDs, newest last.
	allocated [][]string
}

// NewDevicePlugin is the seed's plugin: nvidia.com/gpu.shared ×8.
func NewDevicePlugin() *DevicePlugin {
	return &DevicePlugin{Resource: "nvidia.com/gpu.shared", Replicas: 8, UUID: FakeGPUUUID}
}

// DeviceIDs are the replicated IDs, as time-slicing names them.
func (p *DevicePlugin) DeviceIDs() []string {
	ids := make([]string, p.Replicas)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s::%d", p.UUID, i)
	}
	return ids
}

// Start serves the plugin in the kubelet's device-plugin folder and
// registers it with the kubelet.
func (p *DevicePlugin) Start(ctx context.Context, dir string) error {
	p.socket = filepath.Join(dir, "gpuslice-nvidia-shared.sock")
	_ = os.Remove(p.socket)
	l, err := net.Listen("unix", p.socket)
	if err != nil {
		return fmt.Errorf("device plugin: listening on %s: %w", p.socket, err)
	}
	p.srv = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.srv, p)
	go func() { _ = p.srv.Serve(l) }()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("device plugin: dialling the kubelet: %w", err)
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: filepath.Base(p.socket), ResourceName: p.Resource,
	})
	if err != nil {
		return fmt.Errorf("device plugin: registering %s with the kubelet (%s): %w", p.Resource, dir, err)
	}
	return nil
}

// Stop ends the server and removes its socket.
func (p *DevicePlugin) Stop() {
	if p.srv != nil {
		p.srv.Stop()
	}
	if p.socket != "" {
		_ = os.Remove(p.socket)
	}
}

// Allocated returns the device IDs of every Allocate call so far.
func (p *DevicePlugin) Allocated() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.allocated...)
}

func (p *DevicePlugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once, all healthy, and keeps the stream
// open as the kubelet expects.
func (p *DevicePlugin) ListAndWatch(_ *pluginapi.Empty, s pluginapi.DevicePlugin_ListAndWatchServer) error {
	var devs []*pluginapi.Device
	for _, id := range p.DeviceIDs() {
		devs = append(devs, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
	}
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: devs}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// Allocate answers as NVIDIA's plugin does with time-slicing: the
// replicas' underlying GPU UUIDs, once each, in NVIDIA_VISIBLE_DEVICES.
func (p *DevicePlugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		var uuids []string
		seen := map[string]bool{}
		for _, id := range c.DevicesIds {
			uuid, _, _ := strings.Cut(id, "::")
			if !seen[uuid] {
				seen[uuid] = true
				uuids = append(uuids, uuid)
			}
		}
		p.mu.Lock()
		p.allocated = append(p.allocated, append([]string(nil), c.DevicesIds...))
		p.mu.Unlock()
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(uuids, ",")},
		})
	}
	return resp, nil
}

func (p *DevicePlugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
