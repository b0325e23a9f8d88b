// Command build-controlplane builds the local control plane's binaries
// (etcd, kube-apiserver, kube-scheduler, kube-controller-manager) into
// .cache/controlplane/<version>/ if they are not there yet, and prints that
// folder: the value for KUBEBUILDER_ASSETS.
//
// With -node it also builds the real node's binaries (kubelet, kube-proxy,
// containerd, runc, the CNI plugins) into .cache/node/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
)

func main() {
	node := flag.Bool("node", false, "also build the real node's binaries (kubelet, kube-proxy, containerd, runc, CNI plugins)")
	flag.Parse()
	if err := run(*node); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(node bool) error {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := localcluster.BuildBinaries(ctx, root, os.Stderr)
	if err != nil {
		return err
	}
	if node {
		if _, err := localcluster.BuildNodeBinaries(ctx, root, os.Stderr); err != nil {
			return err
		}
	}
	fmt.Println(dir)
	return nil
}
