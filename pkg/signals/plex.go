package signals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

// Activity is what a protected workload is doing on the GPU.
type Activity struct {
	Active bool // e.g. at least one hardware transcode, or one that fell back to the CPU
	Count  int  // hardware transcodes
	// Fallbacks are transcodes that asked for the GPU and run on the CPU:
	// the workload is failing for want of the GPU now, the most urgent
	// trigger there is.
	Fallbacks int
	Detail    string // one human phrase: "2 hardware transcodes (nvdec → nvenc): Movie A, Show B"
}

// Urgent says whether the workload is failing for want of the GPU, so
// the arbiter must not wait for anything before it preempts.
func (a Activity) Urgent() bool { return a.Fallbacks > 0 }

// ActivitySource reports a protected workload's use of the GPU.
type ActivitySource interface {
	Name() string
	Activity(ctx context.Context) (Activity, error)
}

// Plex reads Plex's /status/sessions. It is active while any session's
// video transcode runs on an NVIDIA GPU in full or in part (NVDEC or
// NVENC): those need GPU memory now. A transcode that asked for the GPU
// and fell back to the CPU (no hardware encode) is active too, and
// urgent: Plex keeps it on the CPU, slower than real time, until the
// session restarts. A paused session counts, as its transcoder keeps its
// GPU context; direct play, copy, music, software transcodes nobody asked
// the GPU for, and Intel Quick Sync transcodes (no NVIDIA memory at stake)
// do not.
type Plex struct{ Client *plexhealth.Client }

// Name is the server, for logs.
func (p *Plex) Name() string {
	if p.Client == nil {
		return "plex"
	}
	return "plex " + p.Client.URL
}

// Activity lists the sessions and counts the hardware transcodes.
func (p *Plex) Activity(ctx context.Context) (Activity, error) {
	if p.Client == nil {
		return Activity{}, errors.New("plex: no client: give the Plex URL and token")
	}
	sessions, err := p.Client.Sessions(ctx)
	if err != nil {
		return Activity{}, fmt.Errorf("reading Plex sessions: %w", err)
	}
	return plexActivity(sessions), nil
}

// plexActivity summarises sessions: the CPU fallbacks and hardware
// transcodes by title and pipeline, or, when there are none, what the
// sessions are instead.
func plexActivity(sessions []plexhealth.Session) Activity {
	var titles, pipelines, fellBack []string
	other := map[string]int{}
	for _, s := range sessions {
		switch s.GPUUse() {
		case plexhealth.UseNVIDIA:
			titles = append(titles, s.Title)
			pipelines = append(pipelines, orDash(s.Transcode.HWDecoding)+" → "+orDash(s.Transcode.HWEncoding))
		case plexhealth.UseCPUFallback:
			fellBack = append(fellBack, s.Title)
		case plexhealth.UseSoftware:
			other["software transcode"]++
		case plexhealth.UseOtherGPU:
			other["non-NVIDIA hardware transcode"]++
		default:
			switch {
			case s.Type == "track":
				other["music session"]++
			case s.Transcode != nil: // video copied, audio transcoded: Plex's Direct Stream
				other["direct stream"]++
			default:
				other["direct play"]++
			}
		}
	}
	a := Activity{Active: len(titles)+len(fellBack) > 0, Count: len(titles), Fallbacks: len(fellBack)}
	var parts []string
	if a.Fallbacks > 0 {
		parts = append(parts, fmt.Sprintf("%s fell back to the CPU although hardware was requested: %s",
			plural(a.Fallbacks, "transcode"), strings.Join(fellBack, ", ")))
	}
	if a.Count > 0 {
		slices.Sort(pipelines)
		parts = append(parts, fmt.Sprintf("%s (%s): %s", plural(a.Count, "hardware transcode"), strings.Join(slices.Compact(pipelines), ", "), strings.Join(titles, ", ")))
	}
	if a.Active {
		a.Detail = strings.Join(parts, "; ")
		return a
	}
	if len(sessions) == 0 {
		a.Detail = "no playback"
		return a
	}
	kinds := make([]string, 0, len(other))
	for k, n := range other {
		kinds = append(kinds, plural(n, k))
	}
	slices.Sort(kinds)
	a.Detail = "no hardware transcode (" + strings.Join(kinds, ", ") + ")"
	return a
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
