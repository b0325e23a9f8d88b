package plexhealth

import (
	"fmt"
	"io"

	"github.com/gpuslice/gpuslice/internal/table"
)

// WriteTable prints the findings, the sessions, and a verdict line.
func WriteTable(w io.Writer, r *Report) error {
	tw := table.NewWriter(w)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Check, f.Status, f.Message)
	}
	if len(r.Sessions) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "USER\tTITLE\tPLAYER\tSTATE\tVIDEO\tHARDWARE\tSPEED")
		for _, s := range r.Sessions {
			video, hw, speed := "direct play", "-", "-"
			if t := s.Transcode; t != nil {
				video = orDash(t.VideoDecision)
				if h := t.Hardware(); h != "" {
					hw = h
					if h != "software" {
						hw += " (" + orDash(t.HWDecoding) + " → " + orDash(t.HWEncoding) + ")"
					}
				}
				if t.Speed > 0 {
					speed = fmt.Sprint(t.Speed)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(s.User), s.Title, orDash(s.Player), orDash(s.State), video, hw, speed)
		}
	}
	verdict := "Plex is healthy"
	if !r.Healthy {
		verdict = "Plex is NOT healthy"
	}
	fmt.Fprintf(tw, "\n%s: %d failure(s), %d warning(s)\n", verdict, r.Failures, r.Warnings)
	return tw.Flush()
}
