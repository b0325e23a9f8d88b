package signals

import (
	"context"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/internal/standin/dcgmtest"
)

const mib = int64(1) << 20

const (
	uuid3080 = "GPU-2f7c1b8e-5a3d-4e9f-b6c2-8d1e0a4f7b93"
	uuid3060 = "GPU-9c41d0a2-77e3-4b15-a8f6-3e5b2d19c6f0"
)

// homelab3080 is the reference GPU as the fixtures and dcgmtest report it.
var homelab3080 = GPUMemory{Node: "homelabai", GPU: "0", UUID: uuid3080, Used: 10896 * mib, Free: 1149 * mib}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantErr checks that err holds every part, or is nil when there are none.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if len(parts) == 0 {
		if err != nil {
			t.Errorf("error: %v", err)
		}
		return
	}
	if err == nil {
		t.Errorf("no error, want one with %q", parts)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q lacks %q", err, p)
		}
	}
}

func TestParseDCGM(t *testing.T) {
	const series = `gpu="0",UUID="GPU-x",Hostname="n1"`
	for _, tc := range []struct {
		name, text, node, label string
		want                    []GPUMemory
		err                     []string
	}{
		{name: "homelab", text: "dcgm-homelab.txt", want: []GPUMemory{homelab3080}},
		{name: "pod-mapped copies are one GPU", text: "dcgm-podmapped.txt", want: []GPUMemory{
			homelab3080, {Node: "homelabai", GPU: "1", UUID: uuid3060, Used: 0, Free: 11776 * mib},
		}},
		{name: "NODE=URL overrides Hostname", text: "dcgm-homelab.txt", node: "gpu-box", want: []GPUMemory{{Node: "gpu-box", GPU: "0", UUID: uuid3080, Used: 10896 * mib, Free: 1149 * mib}}},
		{name: "NODE=URL stands in for a missing Hostname", text: "dcgm-no-hostname.txt", node: "homelabai", want: []GPUMemory{homelab3080}},
		{name: "no node label", text: "dcgm-no-hostname.txt",
			err: []string{`DCGM_FI_DEV_FB_USED{gpu="0",UUID="` + uuid3080 + `"}`, `no "Hostname" label names the node`, "NODE=URL", "node label"}},
		{name: "another node label", text: "dcgm-homelab.txt", label: "kubernetes_node", err: []string{`no "kubernetes_node" label`}},
		{name: "a GPU missing FB_FREE is an error, the other is kept", text: "dcgm-missing-free.txt", want: []GPUMemory{homelab3080},
			err: []string{"GPU 1 (" + uuid3060 + ") on node homelabai has no DCGM_FI_DEV_FB_FREE"}},
		{name: "fractional MiB", text: "DCGM_FI_DEV_FB_USED{" + series + "} 0.5\nDCGM_FI_DEV_FB_FREE{" + series + "} 1e3\n",
			want: []GPUMemory{{Node: "n1", GPU: "0", UUID: "GPU-x", Used: mib / 2, Free: 1000 * mib}}},
		{name: "DCGM blank value", text: "DCGM_FI_DEV_FB_USED{" + series + "} 9223372036854775794\nDCGM_FI_DEV_FB_FREE{" + series + "} 1\n",
			err: []string{"not a memory size", "blank"}},
		{name: "negative", text: "DCGM_FI_DEV_FB_USED{" + series + "} -1\nDCGM_FI_DEV_FB_FREE{" + series + "} 1\n", err: []string{"is -1"}},
		{name: "NaN", text: "DCGM_FI_DEV_FB_USED{" + series + "} NaN\nDCGM_FI_DEV_FB_FREE{" + series + "} 1\n", err: []string{"is NaN"}},
		{name: "histogram is not a size", text: "# TYPE DCGM_FI_DEV_FB_USED histogram\nDCGM_FI_DEV_FB_USED_bucket{" + series + `,le="+Inf"} 1` + "\nDCGM_FI_DEV_FB_USED_sum{" + series + "} 1\nDCGM_FI_DEV_FB_USED_count{" + series + "} 1\nDCGM_FI_DEV_FB_FREE{" + series + "} 1\n",
			err: []string{"not a memory size"}},
		{name: "MIG instance", text: `DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-x",GPU_I_PROFILE="3g.20gb",GPU_I_ID="2",Hostname="n1"} 10` + "\n", err: []string{"MIG instance 2"}},
		{name: "no GPU labels", text: `DCGM_FI_DEV_FB_USED{Hostname="n1"} 10` + "\n", err: []string{"neither a gpu nor a UUID label"}},
		{name: "other fields only", text: `DCGM_FI_DEV_GPU_UTIL{` + series + "} 10\n", err: []string{"no DCGM_FI_DEV_FB_USED or DCGM_FI_DEV_FB_FREE series"}},
		{name: "not exposition text", text: "<html>login</html>\n", err: []string{"not Prometheus exposition text", "/metrics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := []byte(tc.text)
			if strings.HasSuffix(tc.text, ".txt") {
				text = fixture(t, tc.text)
			}
			got, err := parseDCGM(text, tc.node, nodeLabel(tc.label))
			wantErr(t, err, tc.err...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// closedURL is a URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/metrics"
	ln.Close()
	return url
}

func TestDCGMExporterTargets(t *testing.T) {
	a := dcgmtest.Start(dcgmtest.RTX3080Ti("homelabai"))
	defer a.Close()
	b3060 := dcgmtest.GPU{Node: "gpu2", Index: 0, UUID: uuid3060, Model: "NVIDIA GeForce RTX 3060", TotalMiB: 12288, ReservedMiB: 512, UsedMiB: 2048}
	b := dcgmtest.Start(b3060, dcgmtest.GPU{Node: "gpu2", Index: 10, UUID: "GPU-10", TotalMiB: 100, UsedMiB: 1})
	defer b.Close()
	bare := dcgmtest.Start(dcgmtest.RTX3080Ti(""))
	defer bare.Close()
	failing := dcgmtest.Start(dcgmtest.RTX3080Ti("gpu3"))
	defer failing.Close()
	failing.Fail(http.StatusInternalServerError)
	down := closedURL(t)

	gpu2 := []GPUMemory{
		{Node: "gpu2", GPU: "0", UUID: uuid3060, Used: 2048 * mib, Free: (12288 - 512 - 2048) * mib},
		{Node: "gpu2", GPU: "10", UUID: "GPU-10", Used: mib, Free: 99 * mib},
	}
	for _, tc := range []struct {
		name    string
		targets []Target
		want    []GPUMemory
		err     []string
	}{
		{name: "two nodes, sorted", targets: []Target{{URL: b.MetricsURL()}, {URL: a.MetricsURL()}}, want: append(slices.Clone(gpu2), homelab3080)},
		{name: "NODE=URL for an exporter without Hostname", targets: []Target{{Node: "homelabai", URL: bare.MetricsURL()}}, want: []GPUMemory{homelab3080}},
		{name: "one fails with 500: the other's GPUs and an error", targets: []Target{{URL: a.MetricsURL()}, {URL: failing.MetricsURL()}},
			want: []GPUMemory{homelab3080}, err: []string{"scraping dcgm-exporter " + failing.MetricsURL(), "HTTP 500", "dcgm-exporter's log"}},
		{name: "one refuses: the other's GPUs and an error", targets: []Target{{URL: down}, {URL: b.MetricsURL()}},
			want: gpu2, err: []string{"scraping dcgm-exporter " + down, "connection refused", "check that dcgm-exporter runs"}},
		{name: "all fail", targets: []Target{{URL: down}, {URL: failing.MetricsURL()}}, err: []string{down, failing.MetricsURL()}},
		{name: "no targets", err: []string{"no dcgm-exporter targets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &DCGMExporter{Targets: tc.targets}
			got, err := d.GPUMemory(context.Background())
			wantErr(t, err, tc.err...)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestDCGMExporterFollowsChanges: each call scrapes anew, so a Set on the
// exporter shows at once; pod mapping does not multiply the GPU.
func TestDCGMExporterFollowsChanges(t *testing.T) {
	srv := dcgmtest.Start(dcgmtest.RTX3080Ti("homelabai"))
	defer srv.Close()
	d := &DCGMExporter{Targets: []Target{{URL: srv.MetricsURL()}}}
	if err := srv.Set("homelabai", 0, 2000); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetPods("homelabai", 0, dcgmtest.Pod{Namespace: "media", Name: "plex-0", Container: "plex"}, dcgmtest.Pod{Namespace: "ai-dev", Name: "vllm-0", Container: "vllm"}); err != nil {
		t.Fatal(err)
	}
	got, err := d.GPUMemory(context.Background())
	want := []GPUMemory{{Node: "homelabai", GPU: "0", UUID: uuid3080, Used: 2000 * mib, Free: (12288 - 243 - 2000) * mib}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	srv.Omit("DCGM_FI_DEV_FB_FREE")
	_, err = d.GPUMemory(context.Background())
	wantErr(t, err, srv.MetricsURL(), "GPU 0 ("+uuid3080+") on node homelabai has no DCGM_FI_DEV_FB_FREE")
	if n := srv.Scrapes(); n != 2 {
		t.Errorf("%d scrapes, want 2", n)
	}
	if name := d.Name(); name != "dcgm-exporter "+srv.MetricsURL() {
		t.Errorf("Name() = %q", name)
	}
}

func TestFinishSortsAndDeduplicates(t *testing.T) {
	in := []GPUMemory{
		{Node: "b", GPU: "10", UUID: "u10"}, {Node: "b", GPU: "2", UUID: "u2"}, {Node: "a", GPU: "1"},
		{Node: "b", GPU: "2", UUID: "u2", Used: 99}, {Node: "a", GPU: "1", Used: 99},
	}
	want := []GPUMemory{{Node: "a", GPU: "1"}, {Node: "b", GPU: "2", UUID: "u2"}, {Node: "b", GPU: "10", UUID: "u10"}}
	if got := finish(in); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// FuzzParseDCGM: no input makes the parser panic.
func FuzzParseDCGM(f *testing.F) {
	for _, name := range []string{"dcgm-homelab.txt", "dcgm-podmapped.txt", "dcgm-missing-free.txt", "dcgm-no-hostname.txt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	f.Add([]byte("DCGM_FI_DEV_FB_USED{gpu=\"0\"} 1e308\n"), "n")
	f.Fuzz(func(t *testing.T, body []byte, node string) {
		gpus, err := parseDCGM(body, node, DefaultNodeLabel)
		if err == nil && len(gpus) == 0 {
			t.Error("no GPUs and no error")
		}
	})
}
