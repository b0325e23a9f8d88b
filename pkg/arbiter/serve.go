package arbiter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gpuslice/gpuslice/internal/serving"
)

// Serve runs the controller and serves /healthz, /readyz and /metrics on
// ln until ctx ends or the controller stops (a lost lease).
func (c *Controller) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx)
		cancel()
	}()
	mux := http.NewServeMux()
	serving.Endpoints(mux, c.Registry(), c.Readiness, c.opts.Log)
	c.opts.Log.Info("arbiter serving", "address", ln.Addr().String(), "dryRun", c.opts.DryRun, "leaderElection", c.opts.LeaderElection.Enabled,
		"minFreeBytes", c.opts.Config.MinFree, "holdDown", c.opts.Config.HoldDown.String(), "interval", c.opts.Interval.String())
	serr := serving.Run(ctx, "arbiter", grace, func() {
		c.leading.Lock()
		c.draining = true
		c.leading.Unlock()
	}, serving.Listener{Server: serving.NewServer(mux, c.opts.Log), Listener: ln})
	err := <-done
	c.opts.Log.Info("arbiter stopped")
	if err == nil {
		err = serr
	}
	return err
}

// Listen opens the health and metrics address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w; choose another --listen-address", addr, err)
	}
	return ln, nil
}
