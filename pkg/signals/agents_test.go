package signals

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/gpu"
)

// reader is an agent's NVML session that has read snap, or is down.
type reader struct {
	snap gpu.Snapshot
	down *gpu.UnavailableError
}

func (r reader) Read() (gpu.Snapshot, error) { return r.snap, nil }
func (r reader) Status() (bool, *gpu.UnavailableError) {
	return r.down == nil, r.down
}

// agentText is what a real agent exporter on node writes for r.
func agentText(t *testing.T, node string, r reader) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(agent.NewExporter(agent.ExporterOptions{Node: node, GPUs: r, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestParseAgent(t *testing.T) {
	fake := gpu.RecordedRTX3080Ti()
	if err := fake.Init(); err != nil {
		t.Fatal(err)
	}
	snap, err := gpu.Read(fake)
	if err != nil {
		t.Fatal(err)
	}
	second := snap.GPUs[0]
	second.Index, second.UUID = 10, "GPU-second"
	two := gpu.Snapshot{GPUs: []gpu.GPU{second, snap.GPUs[0]}}
	mem := snap.GPUs[0].Memory
	// The agent counts the driver's reservation as used, as NVML does.
	want0 := GPUMemory{Node: "homelabai", GPU: "0", UUID: gpu.RecordedUUID, Used: int64(mem.Used), Free: int64(mem.Free)}
	want10 := GPUMemory{Node: "homelabai", GPU: "10", UUID: "GPU-second", Used: int64(mem.Used), Free: int64(mem.Free)}

	for _, tc := range []struct {
		name, node, podNode string
		r                   reader
		body                []byte
		want                []GPUMemory
		err                 []string
	}{
		{name: "one GPU", node: "homelabai", r: reader{snap: snap}, want: []GPUMemory{want0}},
		{name: "sorted by index", node: "homelabai", r: reader{snap: two}, want: []GPUMemory{want0, want10}},
		{name: "node from the pod when the agent names none", podNode: "homelabai", r: reader{snap: snap}, want: []GPUMemory{want0}},
		{name: "NVML down", node: "homelabai", r: reader{down: &gpu.UnavailableError{Reason: "no driver", Fix: "install it"}}, err: []string{"NVML unavailable on the agent"}},
		{name: "not an agent", body: []byte("up 1\n"), err: []string{"is this a gpuslice agent?"}},
		{name: "garbage", body: []byte("{not: metrics"), err: []string{"parsing the agent's metrics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == nil {
				body = agentText(t, tc.node, tc.r)
			}
			got, err := parseAgent(body, tc.podNode)
			wantErr(t, err, tc.err...)
			if len(got) != 0 || len(tc.want) != 0 {
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %+v\nwant %+v", got, tc.want)
				}
			}
		})
	}
}

// TestAgentsWithoutClient: the API server path is the end-to-end tests'
// (no fake clientset here); a missing client is an error, not a panic.
func TestAgentsWithoutClient(t *testing.T) {
	a := &Agents{}
	_, err := a.GPUMemory(context.Background())
	wantErr(t, err, "no Kubernetes client")
	if a.Name() != "gpuslice agents" {
		t.Errorf("Name() = %q", a.Name())
	}
}
