package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gpuslice/gpuslice/internal/filestamp"
	"github.com/gpuslice/gpuslice/pkg/inject"
)

// ConfigWatcher reloads the injector configuration when its file changes,
// as a mounted ConfigMap does some seconds after an edit. A new file that
// does not load is logged and counted, and the previous configuration stays
// in force: a typo in a ConfigMap must not change what is injected. /readyz
// fails with the reason until the file loads again, so that the broken edit
// shows in the rollout and the pod's conditions rather than only in a log.
type ConfigWatcher struct {
	Path, Namespace string
	Every           time.Duration
	Handler         *Handler
	Metrics         *Metrics
	Log             *slog.Logger
}

// Run checks the file every w.Every until ctx ends. loaded is the file's
// stamp when the configuration in force was read.
func (w *ConfigWatcher) Run(ctx context.Context, loaded filestamp.Stamp) {
	ticker := time.NewTicker(w.Every)
	defer ticker.Stop()
	last := loaded
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		st, err := filestamp.Of(w.Path)
		if err != nil || st == last {
			continue // unchanged, or between a volume's symlink swaps
		}
		last = st
		cfg, err := inject.LoadConfig(w.Path, w.Namespace)
		if err != nil {
			w.Metrics.configReloads.WithLabelValues("error").Inc()
			w.Handler.setConfigProblem(fmt.Sprintf("configuration %s does not load (%v): fix or revert it; the previous configuration stays in force meanwhile", w.Path, err))
			w.Log.Error("configuration not reloaded; the previous one stays in force", "path", w.Path, "error", err.Error())
			continue
		}
		w.Handler.SetConfig(cfg)
		w.Metrics.configReloads.WithLabelValues("success").Inc()
		w.Log.Info("configuration reloaded", "path", w.Path, "profiles", cfg.ProfileNames())
	}
}
