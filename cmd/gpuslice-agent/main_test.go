package main

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/image"
)

// TestChartRunsThisBinary renders the chart's agent DaemonSet, both with
// hostPID and with the host's /proc mounted, and parses its command line
// with this binary's flags: the chart must name the binary the image
// puts at image.AgentBinary and pass only flags it has.
func TestChartRunsThisBinary(t *testing.T) {
	root, err := chart.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chart.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range []string{`{}`, `agent: {hostPID: false, nvmlLibrary: /usr/lib/libnvidia-ml.so.1, extraArgs: [--nvml-retry-max=1m]}`} {
		v, err := chart.ParseValues(values)
		if err != nil {
			t.Fatal(err)
		}
		r, err := chart.Render(ch, chart.Options{Values: v})
		if err != nil {
			t.Fatal(err)
		}
		obj := r.Find("DaemonSet", "gpuslice-agent")
		if obj == nil {
			t.Fatalf("values %s: no DaemonSet gpuslice-agent", values)
		}
		var ds appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &ds); err != nil {
			t.Fatal(err)
		}
		c := ds.Spec.Template.Spec.Containers[0]
		if len(c.Command) != 1 || c.Command[0] != image.AgentBinary {
			t.Errorf("values %s: command %q, want [%s]", values, c.Command, image.AgentBinary)
		}
		cmd := newCommand()
		if err := cmd.ParseFlags(c.Args); err != nil {
			t.Errorf("values %s: args %q: %v", values, c.Args, err)
		}
		if extra := cmd.Flags().Args(); len(extra) != 0 {
			t.Errorf("values %s: args %q leave %q, which the agent takes as arguments and refuses", values, c.Args, extra)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"--version"}} {
		cmd := newCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		want := map[string]string{"--help": "--node-name", "--version": "version: "}[args[0]]
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s printed %q, want %q in it", args, out.String(), want)
		}
	}
}

// TestNoNodeName is the mistake of running it by hand without
// --node-name: a clear error before anything starts.
func TestNoNodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	cmd := newCommand()
	cmd.SetArgs([]string{"--kubeconfig", "/nonexistent", "--log-level", "error"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("got %v, want the --node-name fix", err)
	}
}
