package chart

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var gpusliceMetric = regexp.MustCompile(`\bgpuslice_[a-z0-9_]+`)

// codeMetrics collects every string constant in pkg/ (tests aside) that is
// a gpuslice metric name. Reading the source rather than the registries'
// Gather: a labelled vector that has not observed anything yet (every
// webhook counter at start, every agent metric without a GPU) is not
// gathered at all.
func codeMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, "pkg"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && gpusliceMetric.FindString(s) == s {
					names[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// dashboardQueries returns every PromQL expression of the dashboard, with
// where it is, and the panels by title.
func dashboardQueries(t *testing.T, raw []byte) (queries map[string]string, panels []map[string]any) {
	t.Helper()
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	queries = map[string]string{}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["gridPos"]; ok {
				panels = append(panels, v)
				where = "panel " + strconv.Quote(v["title"].(string))
			}
			for k, child := range v {
				if s, ok := child.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					queries[where+" "+k+" "+strconv.Itoa(len(queries))] = s
				}
				walk(where, child)
			}
		case []any:
			for _, child := range v {
				walk(where, child)
			}
		}
	}
	walk("dashboard", dash)
	return queries, panels
}

func TestDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	root := testRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, Dir, chartDashboard))
	if err != nil {
		t.Fatal(err)
	}
	known := codeMetrics(t, root)
	for _, want := range []string{"gpuslice_webhook_admission_duration_seconds", "gpuslice_pod_gpu_memory_bytes"} {
		if !known[want] {
			t.Fatalf("metric %s not found in pkg/: the source scan is broken", want)
		}
	}
	queries, panels := dashboardQueries(t, raw)
	used := map[string]bool{}
	for where, q := range queries {
		for _, name := range gpusliceMetric.FindAllString(q, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("%s queries %s, which no code in pkg/ exports", where, name)
			}
			used[base] = true
		}
	}
	// What the issues ask the dashboard to show.
	for _, want := range []string{
		"gpuslice_pod_gpu_memory_bytes",
		"gpuslice_webhook_admission_duration_seconds",
		"gpuslice_webhook_admission_requests_total",
		"gpuslice_webhook_denials_total",
		"gpuslice_gpu_temperature_celsius",
		"gpuslice_gpu_utilization_ratio",
		"gpuslice_arbiter_leader",
		"gpuslice_arbiter_steps_total",
		"gpuslice_arbiter_preempted_workloads",
	} {
		if !used[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
	for _, p := range panels {
		title, _ := p["title"].(string)
		desc, _ := p["description"].(string)
		body, _ := json.Marshal(p["targets"])
		if strings.Contains(string(body), "kube_") && !strings.Contains(desc, "kube-state-metrics") {
			t.Errorf("panel %q queries kube-state-metrics but its description does not say so", title)
		}
		if strings.Contains(desc+title, "not built yet") || p["type"] == "text" {
			t.Errorf("panel %q is a placeholder; the arbiter exists", title)
		}
		if strings.Contains(string(body), "gpuslice_arbiter_steps_total") && !strings.Contains(string(body), "workload") {
			t.Errorf("panel %q shows the arbiter's steps without the workload they acted on", title)
		}
	}
	// Without kube-state-metrics the node variable still lists the GPU
	// nodes: it reads gpuslice's own metrics.
	for where, q := range queries {
		if strings.HasPrefix(where, "dashboard ") && strings.Contains(q, "kube_") {
			t.Errorf("%s needs kube-state-metrics: %s", where, q)
		}
	}
}
