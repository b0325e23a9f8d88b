// Command image builds the gpuslice image the chart runs
// (ghcr.io/gpuslice/gpuslice:<the chart's appVersion>) without a container
// engine, as a tarball for `ctr images import`, `k3s ctr images import`,
// K3s's air-gap images folder or `docker load`:
//
//	go run ./hack/image -o gpuslice.tar
//	go run ./hack/image -o gpuslice.tar --platform linux/amd64,linux/arm64
//
// With several platforms it writes one tarball per platform, the
// architecture added before the extension (gpuslice-arm64.tar): docker
// load and K3s's images folder take one image per name and tag.
//
// The binary is a cgo build with glibc from Debian's packages beside it
// (the agent dlopens NVML, a glibc library): it needs gcc and libc6 for
// this machine's architecture, and for another one Debian's cross compiler
// and libc (gcc-aarch64-linux-gnu and libc6-arm64-cross for arm64 on amd64).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/image"
)

func main() {
	out := flag.String("o", "gpuslice.tar", "tarball to write")
	platforms := flag.String("platform", image.HostPlatform().String(), "comma-separated OS/ARCH list, e.g. linux/amd64,linux/arm64")
	flag.Parse()
	if err := run(*out, *platforms); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(out, platforms string) error {
	ps, err := image.ParsePlatforms(platforms)
	if err != nil {
		return err
	}
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	ctx := context.Background()
	version, err := image.ChartVersion(root)
	if err != nil {
		return err
	}
	spec := image.GpusliceSpec(root, version, image.GitCommit(ctx, root))
	for _, p := range ps {
		file := out
		if len(ps) > 1 {
			file = archFile(out, p.Arch)
		}
		img, err := image.Build(ctx, spec, p)
		if err != nil {
			return err
		}
		if err := image.WriteTarball(file, spec.Ref, img); err != nil {
			return err
		}
		fmt.Printf("%s %s (%s, commit %s)\n", file, spec.Ref, p, spec.Commit)
	}
	return nil
}

// archFile inserts -ARCH before the file's extension.
func archFile(file, arch string) string {
	if i := strings.LastIndex(file, "."); i > strings.LastIndex(file, "/") {
		return file[:i] + "-" + arch + file[i:]
	}
	return file + "-" + arch
}
