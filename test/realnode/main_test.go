// Package realnode runs gpuslice on a real node: the local control plane
// with a kubelet, containerd and runc, kube-proxy and the CNI bridge on
// this machine (rn.StartRealNode), the chart's pods running from
// the image hack/image builds.
//
// It needs root. Without it, or where the node cannot start, every test
// skips and says why, unless GPUSLICE_REQUIRE_REAL_NODE=1 (set by .ci/run)
// makes that a failure.
package realnode

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// node is the one real node every test shares (starting it takes a while,
// building it the first time much longer).
var (
	node       *rn.RealNode
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Building the node the first time takes most of this.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()
	n, err := rn.StartRealNode(ctx, rn.RealNodeOptions{
		Labels:   seed.HomelabAI().Labels,
		Progress: os.Stderr,
	})
	if err != nil {
		if errors.Is(err, rn.ErrRealNodeUnavailable) && os.Getenv("GPUSLICE_REQUIRE_REAL_NODE") != "1" {
			skipReason = err.Error()
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "starting the real node: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "real node: started in %s\n", time.Since(start).Round(time.Second))
	node = n
	// Interrupted (Ctrl-C, or CI cancelling), stop the node before going:
	// the test binary would otherwise exit leaving it running.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "real node: %v, stopping the node\n", s)
		n.Stop()
		os.Exit(1)
	}()
	code := m.Run()
	signal.Stop(sigs)
	n.Stop()
	if left := n.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the stopped real node left behind:\n")
		for _, l := range left {
			fmt.Fprintf(os.Stderr, "  %s\n", l)
		}
		return 1
	}
	fmt.Fprintln(os.Stderr, "real node: stopped, nothing left behind (processes, mounts, bridge, netns, iptables chains, cgroups, devices)")
	return code
}

// realNode returns the shared node, or skips the test saying why there is
// none.
func realNode(t *testing.T) *rn.RealNode {
	t.Helper()
	if node == nil {
		t.Skipf("no real node: %s", skipReason)
	}
	return node
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
