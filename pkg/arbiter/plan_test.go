package arbiter

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const gi = int64(1) << 30

var t0 = time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)

// wl builds a workload on homelabai with ready pods.
func wl(ns, name string, pol policy.Policy, replicas int32, mods ...func(*clusterview.Workload)) *clusterview.Workload {
	w := &clusterview.Workload{Ref: workload.Ref{Kind: workload.KindDeployment, Namespace: ns, Name: name}, Policy: pol, Replicas: replicas, Ready: replicas,
		Nodes: []string{"homelabai"}, Template: &corev1.PodTemplateSpec{}, RolledOut: true}
	for i := int32(0); i < replicas; i++ {
		w.Pods = append(w.Pods, &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	}
	for _, m := range mods {
		m(w)
	}
	return w
}

func protected(prio int32) policy.Policy { return policy.Policy{Protected: true, Priority: prio} }
func preemptible(prio int32) policy.Policy {
	return policy.Policy{Preemptible: true, Priority: prio, Action: policy.ActionScaleToZero}
}

// released marks w released by who, its pods gone.
func released(who string) func(*clusterview.Workload) {
	return func(w *clusterview.Workload) {
		w.Record = &workload.ReleaseRecord{Replicas: w.Replicas, By: who, Node: "homelabai", At: "2026-11-28T20:00:00Z"}
		w.Replicas, w.Ready, w.Pods, w.Schedules = 0, 0, nil, false
	}
}

// cronJob makes w a CronJob that schedules (released undoes that).
func cronJob(w *clusterview.Workload) {
	w.Ref.Kind, w.Schedules = workload.KindCronJob, true
}

// suspendedByHand is a CronJob a person suspended: no record.
func suspendedByHand(w *clusterview.Workload) { w.Schedules = false }

func memory(max string) func(*clusterview.Workload) {
	return func(w *clusterview.Workload) {
		q := resource.MustParse(max)
		w.Memory = &ledger.MemoryRange{Min: q, Max: q}
	}
}

func unready(w *clusterview.Workload) { w.Ready = 0 }

func hours(spec string) func(*clusterview.Workload) {
	return func(w *clusterview.Workload) {
		h, err := policy.ParseHours(spec, time.UTC)
		if err != nil {
			panic(err)
		}
		w.Policy.Hours = h
	}
}

func plexRef() workload.Ref {
	return workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
}

type round struct {
	at       time.Duration // after t0
	freeGi   float64       // -1: memory unknown
	active   bool          // Plex transcoding
	fallback bool          // a Plex transcode fell back to the CPU
	wantStep string        // "preempt ai/ollama", "restore ai-dev/vllm-server" or ""
	wantWait string        // part of NodeStatus.Waiting
}

func TestPlan(t *testing.T) {
	cfg := Config{MinFree: 1 * gi, Margin: gi / 2, HoldDown: 5 * time.Minute, UnhealthyGrace: 30 * time.Second, Identity: Identity, PreemptTimeout: 2 * time.Minute}
	terminating := func(w *clusterview.Workload) {
		released(Identity)(w)
		w.Pods = []*corev1.Pod{{}}
	}
	plex := func(mods ...func(*clusterview.Workload)) *clusterview.Workload {
		return wl("media", "plex", protected(1000000), 1, mods...)
	}
	vllm := func(mods ...func(*clusterview.Workload)) *clusterview.Workload {
		return wl("ai-dev", "vllm-server", preemptible(1000), 2, append([]func(*clusterview.Workload){memory("8.4Gi")}, mods...)...)
	}
	ollama := func(mods ...func(*clusterview.Workload)) *clusterview.Workload {
		return wl("ai", "ollama", preemptible(500), 1, append([]func(*clusterview.Workload){memory("4Gi")}, mods...)...)
	}
	// The seed's overnight training: a CronJob allowed 01:00-06:00.
	training := func(replicas int32, mods ...func(*clusterview.Workload)) *clusterview.Workload {
		return wl("ai", "nightly-training", preemptible(100), replicas, append([]func(*clusterview.Workload){cronJob, hours("01:00-06:00"), memory("6Gi")}, mods...)...)
	}
	tests := []struct {
		name      string
		workloads []*clusterview.Workload
		watched   bool // a memory source is configured
		// forged are the workloads whose arbiter records the journal does
		// not hold; every other record by the arbiter is held since t0.
		forged []string
		rounds []round
	}{
		{name: "quiet", workloads: []*clusterview.Workload{plex(), vllm(), ollama()}, watched: true,
			rounds: []round{{freeGi: 3}}},
		{name: "transcode preempts the lowest priority first", workloads: []*clusterview.Workload{plex(), vllm(), ollama()},
			rounds: []round{{active: true, wantStep: "preempt ai/ollama"}}},
		{name: "transcode spares workloads above Plex", workloads: []*clusterview.Workload{plex(), wl("ai", "vip", preemptible(2000000), 1)},
			rounds: []round{{active: true}}},
		{name: "memory pressure preempts anyone preemptible", workloads: []*clusterview.Workload{wl("ai", "vip", preemptible(2000000), 1)}, watched: true,
			rounds: []round{{freeGi: 0.5, wantStep: "preempt ai/vip"}}},
		{name: "one at a time: wait for the pods to go", workloads: []*clusterview.Workload{plex(), vllm(), ollama(func(w *clusterview.Workload) {
			released(Identity)(w)
			w.Pods = []*corev1.Pod{{}}
		})}, rounds: []round{{active: true, wantWait: "waiting for deployment ai/ollama to give up the GPU"}}},
		{name: "a CPU fallback preempts at once though memory is plentiful", workloads: []*clusterview.Workload{plex(), vllm(), ollama()}, watched: true,
			rounds: []round{{freeGi: 10, fallback: true, wantStep: "preempt ai/ollama"}}},
		{name: "a CPU fallback does not wait for the last preemption", workloads: []*clusterview.Workload{plex(), vllm(), ollama(func(w *clusterview.Workload) {
			released(Identity)(w)
			w.Pods = []*corev1.Pod{{}}
		})}, rounds: []round{{fallback: true, wantStep: "preempt ai-dev/vllm-server"}}},
		{name: "a CPU fallback spares workloads above Plex", workloads: []*clusterview.Workload{plex(), wl("ai", "vip", preemptible(2000000), 1)},
			rounds: []round{{fallback: true}}},
		{name: "a forged record is not waited for", workloads: []*clusterview.Workload{plex(), vllm(), ollama(terminating)}, forged: []string{"ollama"},
			rounds: []round{{active: true, wantStep: "preempt ai-dev/vllm-server"}}},
		{name: "a forged record is never restored", workloads: []*clusterview.Workload{plex(), vllm(released(Identity))}, forged: []string{"vllm-server"},
			rounds: []round{{}, {at: time.Hour}}},
		{name: "a preemption that does not take effect is waited for until the timeout", workloads: []*clusterview.Workload{plex(), vllm(), ollama(terminating)},
			rounds: []round{
				{active: true, wantWait: "waiting for deployment ai/ollama to give up the GPU"},
				{at: 2 * time.Minute, active: true, wantStep: "preempt ai-dev/vllm-server"},
			}},
		{name: "memory too low after the first: the next", workloads: []*clusterview.Workload{plex(), vllm(), ollama(released(Identity))}, watched: true,
			rounds: []round{{freeGi: 0.5, wantStep: "preempt ai-dev/vllm-server"}}},
		// On the real node the memory of a preempted process still showed
		// in the sample right after its pod was gone.
		{name: "memory just released: the next only after the release grace", workloads: []*clusterview.Workload{plex(), vllm(), ollama(released(Identity))}, watched: true,
			rounds: []round{
				{freeGi: 0.5, wantWait: "memory sample taken after the last preemption took effect"},
				{at: time.Second, freeGi: 0.5, wantWait: "memory sample taken after the last preemption took effect"},
				{at: 3 * time.Second, freeGi: 0.5, wantStep: "preempt ai-dev/vllm-server"},
			}},
		{name: "hold-down, then the highest priority back first", workloads: []*clusterview.Workload{plex(), vllm(released(Identity)), ollama(released(Identity))},
			rounds: []round{
				{wantWait: "holds down for 5m0s more"},
				{at: 4 * time.Minute, wantWait: "holds down for 1m0s more"},
				{at: 5 * time.Minute, wantStep: "restore ai-dev/vllm-server"},
			}},
		{name: "activity resets the hold-down", workloads: []*clusterview.Workload{plex(), vllm(released(Identity))},
			rounds: []round{{}, {at: 4 * time.Minute, active: true}, {at: 6 * time.Minute, wantWait: "holds down for 5m0s more"}}},
		{name: "an operator's release is theirs", workloads: []*clusterview.Workload{plex(), vllm(released("alice"))},
			rounds: []round{{}, {at: time.Hour}}},
		{name: "hysteresis: just above the threshold is not clear", workloads: []*clusterview.Workload{plex(), ollama(released(Identity))}, watched: true,
			rounds: []round{{freeGi: 1.2, wantWait: "threshold plus margin"}, {at: time.Hour, freeGi: 1.2, wantWait: "threshold plus margin"}}},
		{name: "a restore must fit with the margin", workloads: []*clusterview.Workload{plex(), vllm(released(Identity))}, watched: true,
			rounds: []round{{freeGi: 9}, {at: time.Hour, freeGi: 9, wantWait: "needs about 8.4Gi back"}, {at: 2 * time.Hour, freeGi: 10, wantStep: "restore ai-dev/vllm-server"}}},
		{name: "unknown memory restores nothing", workloads: []*clusterview.Workload{plex(), vllm(released(Identity))}, watched: true,
			rounds: []round{{freeGi: -1}, {at: time.Hour, freeGi: -1, wantWait: "unknown"}}},
		{name: "outside active hours", workloads: []*clusterview.Workload{plex(), vllm(hours("07:00-19:00"))},
			rounds: []round{{wantStep: "preempt ai-dev/vllm-server"}}},
		{name: "released outside active hours stays so until they open", workloads: []*clusterview.Workload{plex(), vllm(hours("07:00-19:00"), released(Identity))},
			rounds: []round{{}, {at: 9 * time.Hour}, {at: 10*time.Hour + 30*time.Minute, wantStep: "restore ai-dev/vllm-server"}}},
		{name: "a CronJob outside its hours is suspended though no Job runs", workloads: []*clusterview.Workload{plex(), training(0)},
			rounds: []round{{wantStep: "preempt ai/nightly-training"}}},
		{name: "a CronJob's running Job outside its hours", workloads: []*clusterview.Workload{plex(), training(1)},
			rounds: []round{{wantStep: "preempt ai/nightly-training"}}},
		{name: "a CronJob inside its hours runs", workloads: []*clusterview.Workload{plex(), training(1)},
			rounds: []round{{at: 5 * time.Hour}}},
		{name: "a suspended CronJob is waited for until its Job's pods are gone", workloads: []*clusterview.Workload{plex(), vllm(), training(1, released(Identity), func(w *clusterview.Workload) {
			w.Pods = []*corev1.Pod{{}}
		})}, rounds: []round{{active: true, wantWait: "waiting for cronjob ai/nightly-training to give up the GPU"}}},
		{name: "the arbiter's suspended CronJob is resumed when its hours open", workloads: []*clusterview.Workload{plex(), training(0, released(Identity))},
			rounds: []round{{}, {at: 3 * time.Hour}, {at: 4*time.Hour + 30*time.Minute, wantStep: "restore ai/nightly-training"}}},
		{name: "a CronJob suspended by hand is never resumed", workloads: []*clusterview.Workload{plex(), training(0, suspendedByHand)},
			rounds: []round{{}, {at: 4*time.Hour + 30*time.Minute}, {at: 5 * time.Hour}}},
		{name: "unhealthy Plex counts after the grace", workloads: []*clusterview.Workload{plex(unready), vllm()},
			rounds: []round{{}, {at: 29 * time.Second}, {at: 30 * time.Second, wantStep: "preempt ai-dev/vllm-server"}}},
		{name: "restore waits for the last one to serve", workloads: []*clusterview.Workload{plex(), vllm(unready), ollama(released(Identity))},
			rounds: []round{{at: time.Hour, wantWait: "to serve (0 of 2 ready)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &clusterview.View{Workloads: tt.workloads, Ledger: &ledger.Report{Nodes: []ledger.NodeReport{{Name: "homelabai", GPUMemoryBytes: 12 * gi}}}}
			memo := NewMemo()
			if strings.HasPrefix(tt.name, "restore waits") {
				memo.Restored("homelabai", tt.workloads[1].Ref)
			}
			if strings.HasPrefix(tt.name, "memory just released") {
				memo.Preempted("homelabai", tt.workloads[2].Ref, t0)
			}
			for i, r := range tt.rounds {
				sig := Signals{Now: t0.Add(r.at), Sample: uint64(i + 1), MemoryWatched: tt.watched,
					Memory: map[string][]signals.GPUMemory{}, Activity: map[workload.Ref]signals.Activity{}, Held: map[workload.Ref]journal.Hold{}}
				for _, w := range tt.workloads {
					if (w.Record != nil && w.Record.By == Identity || w.Lowered != nil) && !slices.Contains(tt.forged, w.Ref.Name) {
						sig.Held[w.Ref] = journal.Hold{Workload: w.Ref, At: t0}
					}
				}
				if tt.watched && r.freeGi >= 0 {
					sig.Memory["homelabai"] = []signals.GPUMemory{{Node: "homelabai", GPU: "0", Free: int64(r.freeGi * float64(gi))}}
				}
				switch {
				case r.fallback:
					sig.Activity[plexRef()] = signals.Activity{Active: true, Fallbacks: 1, Detail: "1 transcode fell back to the CPU"}
				case r.active:
					sig.Activity[plexRef()] = signals.Activity{Active: true, Count: 1, Detail: "1 hardware transcode"}
				}
				before := memo.clone()
				steps, status, next := Plan(v, sig, cfg, memo)
				if !reflect.DeepEqual(memo, before) {
					t.Fatalf("round %d: Plan changed the memo it was given", i)
				}
				memo = next
				got := ""
				if len(steps) > 0 {
					got = steps[0].Kind + " " + steps[0].Workload.Ref.Namespace + "/" + steps[0].Workload.Ref.Name
				}
				if got != r.wantStep {
					t.Errorf("round %d: step %q, want %q (status %+v)", i, got, r.wantStep, status)
				}
				if !strings.Contains(status[0].Waiting, r.wantWait) {
					t.Errorf("round %d: waiting %q, want it to say %q", i, status[0].Waiting, r.wantWait)
				}
			}
		})
	}
}
