//go:build realnode

package main

import (
	"context"
	"io"
	"time"

	"github.com/gpuslice/gpuslice/internal/demo/realevening"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// With -tags realnode the binary carries the real node (kubelet,
// containerd and runc built from hack/, the CRI and image code): kept out of
// the release build, which it would make 23 MB larger.
func init() { playRealNode = playEveningOnRealNode }

func playEveningOnRealNode(ctx context.Context, progress io.Writer) (*realNodeResult, error) {
	n, err := rn.StartRealNode(ctx, rn.RealNodeOptions{Labels: seed.HomelabAI().Labels, Progress: progress})
	if err != nil {
		return nil, err
	}
	defer n.Stop()
	const holdDown = "5s"
	evening, err := realevening.Setup(ctx, n, holdDown)
	if err != nil {
		return nil, err
	}
	times, err := evening.Cycle(ctx, nil)
	if err != nil {
		return nil, err
	}
	r := &realNodeResult{HoldDown: holdDown, Grace: realevening.Grace}
	for i, s := range realevening.Stages {
		r.Stages = append(r.Stages, realNodeStage{Stage: s, Seconds: times[i].Round(time.Millisecond).Seconds()})
	}
	return r, nil
}
