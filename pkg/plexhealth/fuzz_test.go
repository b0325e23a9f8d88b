package plexhealth

import (
	"bytes"
	"testing"

	"github.com/gpuslice/gpuslice/internal/testutil/golden"
)

// FuzzParseSessions: whatever answers at the Plex URL, the parser returns
// sessions or an error, never panics, and every session it returns has a
// type and a describable transcode.
func FuzzParseSessions(f *testing.F) {
	for _, b := range golden.Files(f, "testdata/sessions-*.xml") {
		f.Add(b)
	}
	f.Add([]byte(`<MediaContainer><Video><TranscodeSession speed="NaN" transcodeHwFullPipeline="true"/></Video></MediaContainer>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sessions, err := ParseSessions(bytes.NewReader(body))
		if err != nil {
			return
		}
		for _, s := range sessions {
			if s.Type == "" {
				t.Errorf("session without a type: %+v", s)
			}
			if tr := s.Transcode; tr != nil {
				_, _ = tr.Hardware(), tr.Problem()
			}
		}
	})
}
