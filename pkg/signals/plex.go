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
	Active bool   // e.g. at least one hardware transcode
	Count  int    // hardware transcodes
	Detail string // one human phrase: "2 hardware transcodes (nvdec → nvenc): Movie A, Show B"
}

// ActivitySource reports a protected workload's use of the GPU.
type ActivitySource interface {
	Name() string
	Activity(ctx context.Context) (Activity, error)
}

// Plex reads Plex's /status/sessions. It is active while any session's
// video transcode runs on the GPU in full or in part (NVDEC or NVENC):
// those need GPU memory now, and a transcode that cannot get it falls back
// to the CPU, slower than real time. A paused session counts, as its
// transcoder keeps its GPU context; direct play, copy and software
// transcodes do not.
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

// plexActivity summarises sessions: the hardware transcodes by title and
// pipeline, or, when there are none, what the sessions are instead.
func plexActivity(sessions []plexhealth.Session) Activity {
	var titles, pipelines []string
	other := map[string]int{}
	for _, s := range sessions {
		kind := "direct play"
		if t := s.Transcode; t != nil {
			switch hw := t.Hardware(); hw {
			case "full", "encode", "decode":
				titles = append(titles, s.Title)
				pipelines = append(pipelines, orDash(t.HWDecoding)+" → "+orDash(t.HWEncoding))
				continue
			case "software":
				kind = "software transcode"
			default: // video copied, audio transcoded: Plex's Direct Stream
				kind = "direct stream"
			}
		}
		other[kind]++
	}
	a := Activity{Active: len(titles) > 0, Count: len(titles)}
	if a.Active {
		slices.Sort(pipelines)
		a.Detail = fmt.Sprintf("%s (%s): %s", plural(a.Count, "hardware transcode"), strings.Join(slices.Compact(pipelines), ", "), strings.Join(titles, ", "))
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
