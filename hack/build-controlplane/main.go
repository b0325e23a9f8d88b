// Command build-controlplane builds the local control plane's binaries
// (etcd, kube-apiserver, kube-scheduler, kube-controller-manager) into
// .cache/controlplane/<version>/ if they are not there yet, and prints that
// folder: the value for KUBEBUILDER_ASSETS.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
)

func main() {
	wd, err := os.Getwd()
	if err == nil {
		var root string
		if root, err = localcluster.FindRepoRoot(wd); err == nil {
			var dir string
			if dir, err = localcluster.BuildBinaries(context.Background(), root, os.Stderr); err == nil {
				fmt.Println(dir)
				return
			}
		}
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
