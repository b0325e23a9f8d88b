package dcgmtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func fetch(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestMetricsText: the text parses as Prometheus exposition text, with
// dcgm-exporter's label order and one series per mapped pod.
func TestMetricsText(t *testing.T) {
	g := RTX3080Ti("homelabai")
	g.Pods = []Pod{{"media", "plex-0", "plex"}, {"ai-dev", "vllm-0", "vllm"}}
	s := Start(g, GPU{Node: "homelabai", Index: 1, UUID: "GPU-1", Model: `Odd "model"`, TotalMiB: 8192, UsedMiB: 9000})
	defer s.Close()

	code, body := fetch(t, s.MetricsURL())
	if code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	used := families["DCGM_FI_DEV_FB_USED"].GetMetric()
	free := families["DCGM_FI_DEV_FB_FREE"].GetMetric()
	if len(used) != 3 || len(free) != 3 || families["DCGM_FI_DEV_GPU_UTIL"] == nil {
		t.Fatalf("%d used, %d free series:\n%s", len(used), len(free), body)
	}
	if v := used[0].GetGauge().GetValue(); v != 10896 {
		t.Errorf("GPU 0 used %v MiB", v)
	}
	if v := free[2].GetGauge().GetValue(); v != 0 {
		t.Errorf("over-full GPU 1 free %v MiB, want 0", v)
	}
	const line = `DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-2f7c1b8e-5a3d-4e9f-b6c2-8d1e0a4f7b93",pci_bus_id="00000000:01:00.0",device="nvidia0",modelName="NVIDIA GeForce RTX 3080 Ti",Hostname="homelabai",DCGM_FI_DRIVER_VERSION="550.120",container="vllm",namespace="ai-dev",pod="vllm-0"} 10896`
	for _, want := range []string{"# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).\n# TYPE DCGM_FI_DEV_FB_FREE gauge\n", line, `modelName="Odd \"model\""`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("text lacks %s", want)
		}
	}

	if err := s.Set("homelabai", 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("elsewhere", 0, 1); err == nil {
		t.Error("Set on an unknown GPU")
	}
	s.Omit("DCGM_FI_DEV_FB_FREE")
	_, body = fetch(t, s.MetricsURL())
	if strings.Contains(string(body), "FB_FREE") || !strings.Contains(string(body), "pod=\"plex-0\"} 100\n") {
		t.Errorf("after Set and Omit:\n%s", body)
	}
	s.Fail(http.StatusInternalServerError)
	if code, _ := fetch(t, s.MetricsURL()); code != http.StatusInternalServerError {
		t.Errorf("failing: HTTP %d", code)
	}
	if n := s.Scrapes(); n != 3 {
		t.Errorf("%d scrapes, want 3", n)
	}
}

func query(t *testing.T, s *Server, q string) (int, promAnswer) {
	t.Helper()
	code, body := fetch(t, s.URL+"/api/v1/query?"+url.Values{"query": {q}}.Encode())
	var a promAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return code, a
}

func TestQuery(t *testing.T) {
	g := RTX3080Ti("homelabai")
	g.Hostname = "dcgm-exporter-x7k2p"
	s := Start(g)
	defer s.Close()
	s.SetPrometheusNodeLabel("kubernetes_node")

	code, a := query(t, s, "DCGM_FI_DEV_FB_FREE")
	if code != http.StatusOK || a.Status != "success" || a.Data == nil || a.Data.ResultType != "vector" || len(a.Data.Result) != 1 {
		t.Fatalf("HTTP %d %+v", code, a)
	}
	r := a.Data.Result[0]
	if r.Metric["__name__"] != "DCGM_FI_DEV_FB_FREE" || r.Metric["Hostname"] != "dcgm-exporter-x7k2p" || r.Metric["kubernetes_node"] != "homelabai" || r.Metric["job"] != "dcgm-exporter" {
		t.Errorf("labels %v", r.Metric)
	}
	if _, ok := r.Value[0].(float64); !ok || r.Value[1] != "1149" {
		t.Errorf("value %v", r.Value)
	}
	if _, a := query(t, s, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"); a.Status != "success" || a.Data == nil || len(a.Data.Result) != 0 {
		t.Errorf("unserved field: %+v", a)
	}
	for q, want := range map[string]int{
		`DCGM_FI_DEV_FB_FREE{job=~".*dcgm-exporter", kubernetes_node="homelabai"}`: 1,
		`DCGM_FI_DEV_FB_FREE{job="node-exporter"}`:                                 0,
		`DCGM_FI_DEV_FB_FREE{job!~"dcgm.*"}`:                                       0,
	} {
		if _, a := query(t, s, q); a.Data == nil || len(a.Data.Result) != want {
			t.Errorf("%s: %+v, want %d series", q, a, want)
		}
	}
	s.AddPrometheusSeries(map[string]string{"__name__": "DCGM_FI_DEV_FB_FREE", "job": "spoof", "gpu": "0"}, "0")
	if _, a := query(t, s, `DCGM_FI_DEV_FB_FREE{job="spoof"}`); a.Data == nil || len(a.Data.Result) != 1 || a.Data.Result[0].Value[1] != "0" {
		t.Errorf("added series: %+v", a)
	}
	if code, a := query(t, s, "sum(DCGM_FI_DEV_FB_FREE)"); code != http.StatusBadRequest || a.ErrorType != "bad_data" {
		t.Errorf("expression: HTTP %d %+v", code, a)
	}
	s.Fail(http.StatusServiceUnavailable)
	if code, a := query(t, s, "DCGM_FI_DEV_FB_FREE"); code != http.StatusServiceUnavailable || a.Status != "error" || a.ErrorType != "unavailable" {
		t.Errorf("failing: HTTP %d %+v", code, a)
	}
	if n := s.Queries(); n != 8 {
		t.Errorf("%d queries, want 8", n)
	}
}

// TestConcurrent: Set while scraping (run with -race).
func TestConcurrent(t *testing.T) {
	s := Start(RTX3080Ti("homelabai"))
	defer s.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Set("homelabai", 0, int64(i)); err != nil {
				t.Error(err)
			}
			if err := s.SetPods("homelabai", 0, Pod{"ns", "p", "c"}); err != nil {
				t.Error(err)
			}
			// No t.Fatal off the test's goroutine: plain gets.
			for _, u := range []string{s.MetricsURL(), s.URL + "/api/v1/query?query=DCGM_FI_DEV_FB_USED"} {
				resp, err := http.Get(u)
				if err != nil {
					t.Error(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if s.Scrapes() != 8 || s.Queries() != 8 {
		t.Errorf("%d scrapes, %d queries", s.Scrapes(), s.Queries())
	}
}
