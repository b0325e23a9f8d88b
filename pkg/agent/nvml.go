package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/pkg/gpu"
)

// NVMLSession keeps NVML initialised. When NVML cannot start (no driver
// library in the pod, no GPU on the node) or is lost (driver reloaded, GPU
// fallen off the bus), it says why once in the log, reports unavailable,
// and retries with exponential backoff, so the agent keeps serving instead
// of crash-looping.
type NVMLSession struct {
	lib      gpu.NVML
	log      *slog.Logger
	retryMin time.Duration
	retryMax time.Duration

	// mu: reads share it; Init and Shutdown take it alone, since NVML
	// handles must not be used across a Shutdown.
	mu        sync.RWMutex
	up        bool
	attempted bool
	reason    *gpu.UnavailableError
	logged    string        // the last reason written at error level
	lost      chan struct{} // a read found the session gone
}

// NewNVMLSession wraps lib; Start initialises it. retryMin and retryMax
// bound the backoff between attempts (defaults 5s and 5m).
func NewNVMLSession(lib gpu.NVML, log *slog.Logger, retryMin, retryMax time.Duration) *NVMLSession {
	if retryMin <= 0 {
		retryMin = 5 * time.Second
	}
	if retryMax <= 0 {
		retryMax = 5 * time.Minute
	}
	retryMin = min(retryMin, retryMax) // --nvml-retry-max below the default first wait
	return &NVMLSession{lib: lib, log: log, retryMin: retryMin, retryMax: retryMax, lost: make(chan struct{}, 1)}
}

// Start makes the first attempt before returning, so /readyz and the first
// scrape tell the truth at once, then keeps NVML up in the background
// until ctx ends, when it shuts NVML down.
func (s *NVMLSession) Start(ctx context.Context) {
	first := s.tryInit()
	go s.run(ctx, first)
}

func (s *NVMLSession) run(ctx context.Context, lastErr error) {
	delay := s.retryMin
	for {
		if lastErr == nil {
			delay = s.retryMin
			select {
			case <-ctx.Done():
				s.shutdown()
				return
			case <-s.lost:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait.Jitter(delay, 0.1)):
			}
			delay = min(delay*2, s.retryMax)
		}
		lastErr = s.tryInit()
	}
}

// tryInit initialises NVML and logs the outcome: success at info, a new
// reason at error with its fix, the same reason again at debug only.
func (s *NVMLSession) tryInit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempted = true
	if err := s.lib.Init(); err != nil {
		s.up, s.reason = false, gpu.AsUnavailable(err)
		msg := s.reason.Error()
		if msg != s.logged {
			s.logged = msg
			s.log.Error("NVML unavailable: no GPU metrics until it starts; still serving and retrying with backoff",
				"reason", s.reason.Reason, "fix", s.reason.Fix, "retryMin", s.retryMin.String(), "retryMax", s.retryMax.String())
		} else {
			s.log.Debug("NVML still unavailable", "reason", s.reason.Reason)
		}
		return err
	}
	s.up, s.reason, s.logged = true, nil, ""
	n, err := s.lib.DeviceCount()
	if err != nil {
		n = -1
	}
	driver, _ := s.lib.DriverVersion()
	s.log.Info("NVML available", "driverVersion", driver, "gpus", n)
	if n == 0 {
		s.log.Warn("NVML lists no GPU: set NVIDIA_VISIBLE_DEVICES=all in the agent's container (the runtime only exposes the GPUs it is told to)")
	}
	return nil
}

// Read takes a snapshot of every GPU. While NVML is down it returns the
// reason; a read that finds the session gone marks it down and wakes the
// retry loop.
func (s *NVMLSession) Read() (gpu.Snapshot, error) {
	s.mu.RLock()
	if !s.up {
		reason := s.unavailable()
		s.mu.RUnlock()
		return gpu.Snapshot{}, reason
	}
	snap, err := gpu.Read(s.lib)
	s.mu.RUnlock()
	if err != nil && gpu.IsFatal(err) {
		s.markLost(err)
	}
	return snap, err
}

func (s *NVMLSession) markLost(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return // another scrape got here first
	}
	_ = s.lib.Shutdown()
	s.up = false
	s.reason = &gpu.UnavailableError{Reason: "NVML session lost: " + cause.Error(), Fix: "the agent initialises NVML again with backoff; if this repeats, check the node's driver with nvidia-smi", Err: cause}
	s.logged = s.reason.Error()
	s.log.Error("NVML session lost; initialising again", "error", cause.Error())
	select {
	case s.lost <- struct{}{}:
	default:
	}
}

// Status says whether NVML is up, and why not.
func (s *NVMLSession) Status() (bool, *gpu.UnavailableError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.up {
		return true, nil
	}
	return false, s.unavailable()
}

// unavailable needs s.mu held.
func (s *NVMLSession) unavailable() *gpu.UnavailableError {
	if !s.attempted || s.reason == nil {
		return &gpu.UnavailableError{Reason: "NVML not initialised yet", Fix: "wait for the agent to start", Err: errNotStarted}
	}
	return s.reason
}

var errNotStarted = errors.New("NVML session not started")

func (s *NVMLSession) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		if err := s.lib.Shutdown(); err != nil {
			s.log.Warn("NVML shutdown", "error", fmt.Sprint(err))
		}
		s.up = false
		s.reason = &gpu.UnavailableError{Reason: "agent stopping", Fix: "none needed", Err: errNotStarted}
	}
}
