// Command render-manifests regenerates deploy/manifests (the chart rendered
// with its default values, for kubectl apply and GitOps), deploy/k3s (the
// chart packed into K3s's HelmChart) and deploy/grafana/gpuslice.json (the
// chart's dashboard). Run it from the
// repository after changing deploy/helm/gpuslice:
//
//	go run ./hack/render-manifests
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/gpuslice/gpuslice/internal/chart"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render-manifests:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := chart.RepoRoot(".")
	if err != nil {
		return err
	}
	files, err := chart.Generated(root)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		fmt.Println("wrote", p)
	}
	return nil
}
