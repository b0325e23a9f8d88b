// Package logging builds the structured logger of gpuslice's long-running
// commands (gpuslice webhook, arbiter, demo, and gpuslice-agent) from their
// --log-format and --log-level flags, and routes klog into it, so that one
// process writes one format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// Flags are --log-format and --log-level.
type Flags struct {
	Format string
	Level  string
}

// AddFlags registers the flags on fs with their defaults (json, info).
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Format, "log-format", "json", "log line format: json or text")
	fs.StringVar(&f.Level, "log-level", "info", "least severe log level written: debug, info, warn or error")
}

// New is the logger the flags describe, writing to w; klog (client-go's
// informers, leader election) writes through it from now on.
func (f Flags) New(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(f.Format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", f.Format)
	}
	log := slog.New(h)
	klog.SetSlogLogger(log)
	return log, nil
}
