package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/demo/evening"
)

// TestDemo keeps the README's first command true: the demo runs on a fresh
// control plane and tells the whole story.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err := demo.Run(context.Background(), demo.Options{Out: &out, Progress: io.Discard, Log: log, Evening: evening.Play(log)})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"runtimeClassName:  nvidia",
		"nvidia-uvm   /dev/nvidia-uvm   plex        /dev/nvidia-uvm",
		"Available   -                     4            50%",
		"vllm-server   ai-dev      hybrid    2            25%",
		"Available     -                     2            25%",
		"Risk: Potential total",
		"== 4. 21:00, Plex starts a hardware transcode: the arbiter scales vLLM to zero ==",
		"event: Preempted Deployment/vllm-server: deployment ai-dev/vllm-server released: 1 → 0 replicas",
		"vLLM returns ==",
		"event: Restored Deployment/vllm-server: deployment ai-dev/vllm-server restored: 0 → 1 replicas",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
