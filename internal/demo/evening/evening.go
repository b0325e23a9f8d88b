// Package evening plays the arbiter's evening on the demo's cluster: Plex
// starts a hardware transcode, the arbiter frees the GPU by scaling vLLM
// to zero, the transcode ends, and vLLM comes back after the hold-down.
// Plex is a stand-in speaking Plex's XML API; the arbiter is the real one.
package evening

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// HoldDown is the demo's hold-down: short, so the story does not wait
// the default five minutes.
const HoldDown = 3 * time.Second

var (
	plexRef = workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
	vllmRef = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
)

// Play is demo.Options.Evening.
func Play(log *slog.Logger) func(ctx context.Context, env *demo.Env, res *demo.Result) error {
	return func(ctx context.Context, env *demo.Env, res *demo.Result) error {
		return play(ctx, env, res, log)
	}
}

func play(ctx context.Context, env *demo.Env, res *demo.Result, log *slog.Logger) error {
	cs := env.Cluster.Client
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	env.Cluster.StartKubelet(ctx)

	// The policy, on the workloads themselves. Plex's priority annotation
	// is believed because the arbiter protects Plex by its configuration
	// (its activity source); vLLM may only lower its own, so it keeps its
	// pods' priority (0, no PriorityClass).
	if _, err := ops.Annotate(ctx, cs, plexRef, map[string]string{workload.AnnotationPriority: "1000000"}, nil, nil); err != nil {
		return err
	}
	if _, err := ops.Annotate(ctx, cs, vllmRef, map[string]string{workload.AnnotationPreemptible: "true"}, nil, nil); err != nil {
		return err
	}

	plex := plextest.Start("demo-token")
	defer plex.Close()
	a := arbiter.New(arbiter.Options{
		Client:   cs,
		Config:   arbiter.Config{MinFree: 1 << 30, Margin: 512 << 20, HoldDown: HoldDown, UnhealthyGrace: 30 * time.Second},
		Interval: 200 * time.Millisecond,
		Zone:     time.UTC,
		Log:      log,
		Sources: arbiter.Sources{Activity: map[workload.Ref]signals.ActivitySource{
			plexRef: &signals.Plex{Client: &plexhealth.Client{URL: plex.URL, Token: "demo-token"}},
		}},
	})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() error {
		cancel()
		return <-done
	}

	plex.SetTranscoding(true)
	if err := chapter(ctx, env, res, "21:00, Plex starts a hardware transcode: the arbiter scales vLLM to zero",
		arbiter.ReasonPreempted, func(replicas, pods int32) bool { return replicas == 0 && pods == 0 }); err != nil {
		return joinStop(err, stop)
	}
	plex.SetTranscoding(false)
	if err := chapter(ctx, env, res, fmt.Sprintf("The transcode ends: after the hold-down (%s here, 5m by default) vLLM returns", HoldDown),
		arbiter.ReasonRestored, func(replicas, ready int32) bool { return replicas == 1 && ready == 1 }); err != nil {
		return joinStop(err, stop)
	}
	return stop()
}

// chapter waits until vLLM's Deployment satisfies done(spec.replicas,
// ready replicas or, while scaling down, pods), then records the
// arbiter's events of reason and the ledger.
func chapter(ctx context.Context, env *demo.Env, res *demo.Result, title, reason string, done func(replicas, n int32) bool) error {
	cs := env.Cluster.Client
	ch := demo.Chapter{Title: title}
	// Done when the Deployment shows the step and the arbiter's event,
	// which it records asynchronously, is stored.
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(vllmRef.Namespace).Get(ctx, vllmRef.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		n := d.Status.ReadyReplicas
		if reason == arbiter.ReasonPreempted {
			n = d.Status.Replicas
		}
		if !done(*d.Spec.Replicas, n) {
			return false, nil
		}
		events, err := cs.CoreV1().Events(vllmRef.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + vllmRef.Name + ",reason=" + reason})
		if err != nil || len(events.Items) == 0 {
			return false, err
		}
		sort.Slice(events.Items, func(i, j int) bool { return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp) })
		e := events.Items[len(events.Items)-1]
		ch.Events = []string{fmt.Sprintf("%s %s/%s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s: waiting for the arbiter: %w", title, err)
	}
	if ch.Ledger, err = snapshot.Ledger(ctx, cs, ledger.Options{}); err != nil {
		return err
	}
	res.Evening = append(res.Evening, ch)
	return nil
}

func joinStop(err error, stop func() error) error {
	if serr := stop(); serr != nil {
		return fmt.Errorf("%w (and stopping the arbiter: %v)", err, serr)
	}
	return err
}
