package signals

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/gpuslice/gpuslice/internal/standin/dcgmtest"
	"github.com/gpuslice/gpuslice/internal/testutil/golden"
)

func TestPrometheus(t *testing.T) {
	pods := []dcgmtest.Pod{{Namespace: "media", Name: "plex-0", Container: "plex"}, {Namespace: "ai-dev", Name: "vllm-0", Container: "vllm"}}
	gpu2 := dcgmtest.GPU{Node: "gpu2", Index: 0, UUID: uuid3060, Model: "NVIDIA GeForce RTX 3060", TotalMiB: 12288, ReservedMiB: 512, UsedMiB: 2048, Pods: pods}
	both := []GPUMemory{{Node: "gpu2", GPU: "0", UUID: uuid3060, Used: 2048 * mib, Free: 9728 * mib}, homelab3080}
	for _, tc := range []struct {
		name      string
		setup     func(s *dcgmtest.Server)
		nodeLabel string
		want      []GPUMemory
		err       []string
	}{
		{name: "two nodes, pod-mapped copies once", want: both},
		{name: "Hostname is the exporter pod, the node is relabelled", setup: func(s *dcgmtest.Server) {
			s.SetPrometheusNodeLabel("kubernetes_node")
			g := dcgmtest.RTX3080Ti("homelabai")
			g.Hostname = "nvidia-dcgm-exporter-x7k2p"
			s.SetGPUs(g)
		}, nodeLabel: "kubernetes_node", want: []GPUMemory{homelab3080}},
		{name: "no node label", setup: func(s *dcgmtest.Server) { s.SetGPUs(dcgmtest.RTX3080Ti("")) },
			err: []string{`no "Hostname" label names the node`, "kubernetes_node"}},
		{name: "empty result", setup: func(s *dcgmtest.Server) { s.Omit("DCGM_FI_DEV_FB_FREE") },
			err: []string{"for DCGM_FI_DEV_FB_FREE", `no DCGM_FI_DEV_FB_FREE{job=~".*dcgm-exporter"} series: is dcgm-exporter scraped by this Prometheus, and does the selector match its job?`}},
		{name: "error status", setup: func(s *dcgmtest.Server) { s.Fail(http.StatusServiceUnavailable) },
			err: []string{"querying Prometheus at http://", "server error: 503, unavailable: dcgmtest: failing as asked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dcgmtest.Start(dcgmtest.RTX3080Ti("homelabai"), gpu2)
			defer srv.Close()
			if tc.setup != nil {
				tc.setup(srv)
			}
			p := &Prometheus{URL: srv.URL + "/", NodeLabel: tc.nodeLabel}
			got, err := p.GPUMemory(context.Background())
			wantErr(t, err, tc.err...)
			if len(got) != 0 || len(tc.want) != 0 {
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %+v\nwant %+v", got, tc.want)
				}
			}
		})
	}
}

// TestPrometheusAnswers: what comes back when the URL is not a Prometheus
// that answers, or answers oddly.
func TestPrometheusAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		err    []string
	}{
		{name: "not the API", status: http.StatusNotFound, body: "404 page not found", err: []string{"client error: 404: 404 page not found", "is http://"}},
		{name: "HTML with 200", status: http.StatusOK, body: "<html>Grafana</html>", err: []string{"not the Prometheus API's JSON", "a Prometheus server?"}},
		{name: "bad_data", status: http.StatusBadRequest, body: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}`,
			err: []string{"(bad_data: invalid parameter", "check the Prometheus selector"}},
		{name: "matrix", status: http.StatusOK, body: `{"status":"success","data":{"resultType":"matrix","result":[]}}`, err: []string{`result type "matrix", want vector`}},
		{name: "success with an error code", status: http.StatusBadGateway, body: `{"status":"success","data":{"resultType":"vector","result":[]}}`, err: []string{"server error: 502"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			gpus, err := (&Prometheus{URL: srv.URL}).GPUMemory(context.Background())
			wantErr(t, err, append(tc.err, "querying Prometheus at "+srv.URL+" for DCGM_FI_DEV_FB_USED")...)
			if len(gpus) != 0 {
				t.Errorf("GPUs %+v from a failed query", gpus)
			}
		})
	}
	down := closedURL(t)
	_, err := (&Prometheus{URL: down}).GPUMemory(context.Background())
	wantErr(t, err, "connection refused", "check the URL and that Prometheus runs")
	_, err = (&Prometheus{}).GPUMemory(context.Background())
	wantErr(t, err, "no Prometheus URL")
}

// TestPrometheusSeriesThatLie: series from another job are not read, and a
// series no GPU can have costs its own node only.
func TestPrometheusSeriesThatLie(t *testing.T) {
	gpu2 := dcgmtest.GPU{Node: "gpu2", Index: 0, UUID: uuid3060, TotalMiB: 12288, ReservedMiB: 512, UsedMiB: 2048}
	real := []GPUMemory{{Node: "gpu2", GPU: "0", UUID: uuid3060, Used: 2048 * mib, Free: 9728 * mib}, homelab3080}
	// One of gpu2's series, as another job or a broken exporter writes it.
	series := func(job, field, value string) func(s *dcgmtest.Server) {
		return func(s *dcgmtest.Server) {
			s.AddPrometheusSeries(map[string]string{"__name__": field, "job": job, "gpu": "0", "UUID": uuid3060, "Hostname": "gpu2"}, value)
		}
	}
	for _, tc := range []struct {
		name     string
		setup    func(s *dcgmtest.Server)
		selector string
		want     []GPUMemory
		err      []string
	}{
		{name: "a spoofed FB_FREE 0 from another job", setup: series("tenant-app", fieldFBFree, "0"), want: real},
		{name: "the spoof is believed when the selector lets it in", setup: series("tenant-app", fieldFBFree, "0"), selector: `job=~"dcgm-exporter|tenant-app"`,
			want: []GPUMemory{{Node: "gpu2", GPU: "0", UUID: uuid3060, Used: 2048 * mib, Free: 0}, homelab3080}},
		{name: "negative", setup: series("dcgm-exporter", fieldFBUsed, "-5"), want: []GPUMemory{homelab3080},
			err: []string{`DCGM_FI_DEV_FB_USED{gpu="0",UUID="` + uuid3060 + `",Hostname="gpu2"} is -5, not a memory size`, "node(s) gpu2 left out"}},
		// The API client decodes the answer whole: a value Prometheus
		// cannot write costs the answer, not the one series.
		{name: "not a number", setup: series("dcgm-exporter", fieldFBFree, "abc"),
			err: []string{"the answer's result does not decode", `"abc"`, "a Prometheus server?"}},
		{name: "infinite", setup: series("dcgm-exporter", fieldFBFree, "+Inf"), want: []GPUMemory{homelab3080},
			err: []string{"is +Inf, not a memory size", "node(s) gpu2 left out"}},
		{name: "DCGM's blank sentinel", setup: series("dcgm-exporter", fieldFBFree, "9223372036854775794"), want: []GPUMemory{homelab3080},
			err: []string{"not a memory size", "node(s) gpu2 left out"}},
		{name: "a series naming no node costs itself", setup: func(s *dcgmtest.Server) {
			s.AddPrometheusSeries(map[string]string{"__name__": fieldFBFree, "job": "dcgm-exporter", "gpu": "0"}, "0")
		}, want: real, err: []string{`DCGM_FI_DEV_FB_FREE{gpu="0"}: no "Hostname" label names the node`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dcgmtest.Start(dcgmtest.RTX3080Ti("homelabai"), gpu2)
			defer srv.Close()
			tc.setup(srv)
			got, err := (&Prometheus{URL: srv.URL, Selector: tc.selector}).GPUMemory(context.Background())
			wantErr(t, err, tc.err...)
			if !reflect.DeepEqual(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzParsePrometheus: whatever a server at the Prometheus URL answers,
// the query returns series or an error without panicking, and the GPUs
// read from them have a node and sizes a GPU can have.
func FuzzParsePrometheus(f *testing.F) {
	for _, b := range golden.Files(f, "testdata/prometheus-*.json") {
		f.Add(b, "")
	}
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"gpu":"0","node":"n"},"value":[1,"1e308"]}]}}`), "node")
	// One server per fuzzing process, answering the current input.
	var answer atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*answer.Load())
	}))
	f.Cleanup(srv.Close)
	f.Fuzz(func(t *testing.T, body []byte, label string) {
		answer.Store(&body)
		var samples []sample
		for _, field := range []string{fieldFBUsed, fieldFBFree} {
			s, err := (&Prometheus{URL: srv.URL}).query(context.Background(), field)
			if err != nil {
				return
			}
			if len(s) == 0 {
				t.Fatal("no series and no error")
			}
			samples = append(samples, s...)
		}
		p := &Prometheus{NodeLabel: label}
		gpus, _ := memoryFromSamples(samples, p.nodeOf)
		for _, g := range gpus {
			if g.Node == "" || g.Used < 0 || g.Free < 0 || g.Used > maxMiB<<20 || g.Free > maxMiB<<20 {
				t.Errorf("impossible GPU %+v", g)
			}
		}
	})
}
