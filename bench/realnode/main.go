// Command realnode measures what a Plex viewer waits for on the real node,
// over many cycles of the seed's evening (internal/demo/realevening says
// what each time is). It needs root.
//
//	go run ./bench/realnode [-cycles 30] [-hold-down 5s] [-seed 1] [-json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/demo/realevening"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
)

// phase draws the wait before each flip, uniform over one arbiter
// interval (1 s), so flips land at random phases of its ticker, as in
// bench/arbiter; without it the numbers depend on where a cycle starts.
var phase *rand.Rand

func randomPhase(ctx context.Context) error {
	return benchstat.Sleep(ctx, time.Duration(phase.Int64N(int64(time.Second))))
}

type result struct {
	Cycles   int                `json:"cycles"`
	HoldDown string             `json:"holdDown"`
	Grace    string             `json:"terminationGracePeriod"`
	Stages   map[string][]int64 `json:"stagesMillis"`
	Machine  map[string]string  `json:"machine"`
}

func main() {
	cycles := flag.Int("cycles", 30, "transcodes to time")
	holdDown := flag.String("hold-down", "5s", "the arbiter's --hold-down")
	asJSON := flag.Bool("json", false, "print the samples as JSON")
	seedFlag := flag.Uint64("seed", 1, "seed of the random phase before each flip")
	flag.Parse()
	phase = rand.New(rand.NewPCG(*seedFlag, 0))
	if err := run(*cycles, *holdDown, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench/realnode:", err)
		os.Exit(1)
	}
}

func run(cycles int, holdDown string, asJSON bool) error {
	if cycles < 1 {
		return errors.New("-cycles must be at least 1")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	n, err := rn.StartRealNode(ctx, rn.RealNodeOptions{Labels: seed.HomelabAI().Labels, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer n.Stop()
	evening, err := realevening.Setup(ctx, n, holdDown)
	if err != nil {
		return err
	}
	res := result{Cycles: cycles, HoldDown: holdDown, Grace: realevening.Grace, Stages: map[string][]int64{}, Machine: benchstat.Machine()}
	for i := range cycles {
		times, err := evening.Cycle(ctx, randomPhase)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", i+1, err)
		}
		for j, s := range realevening.Stages {
			res.Stages[s] = append(res.Stages[s], times[j].Milliseconds())
		}
		fmt.Fprintf(os.Stderr, "cycle %d/%d: %v\n", i+1, cycles, times)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Printf("%d cycles, hold-down %s, vLLM termination grace period %s\n", cycles, holdDown, res.Grace)
	fmt.Printf("| From the transcode appearing to | p50 | p99 | max |\n|---|---|---|---|\n")
	for _, s := range realevening.Stages {
		d := make([]time.Duration, 0, len(res.Stages[s]))
		for _, ms := range res.Stages[s] {
			d = append(d, time.Duration(ms)*time.Millisecond)
		}
		slices.Sort(d)
		label := s
		if s == "Ready again" {
			label = "(the transcode ending to) vLLM Ready again"
		}
		fmt.Printf("| %s | %s | %s | %s |\n", label, benchstat.Percentile(d, 0.5), benchstat.Percentile(d, 0.99), d[len(d)-1])
	}
	fmt.Printf("machine: %v\n", res.Machine)
	return nil
}
