// Package e2e runs gpuslice against a real control plane (etcd,
// kube-apiserver, kube-scheduler, kube-controller-manager) on loopback.
// The binaries come from KUBEBUILDER_ASSETS or the checkout's cache; they are
// built once by hack/test.sh.
package e2e

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
)

// startEnv starts a control plane with the webhook registered, stopped when
// the test ends.
func startEnv(t *testing.T) *demo.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := localcluster.EnsureBinaries(ctx, io.Discard); err != nil {
		t.Fatalf("control-plane binaries: %v", err)
	}
	env, err := demo.StartEnv(ctx, localcluster.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(env.Stop)
	return env
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
