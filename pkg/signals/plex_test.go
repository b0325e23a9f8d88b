package signals

import (
	"context"
	"maps"
	"testing"

	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

func TestPlexActivity(t *testing.T) {
	const token = "plex-token"
	// encodeOnly decodes in software and encodes on NVENC.
	encodeOnly := plextest.HardwareTranscode("Show B", "bob")
	encodeOnly.Transcode = maps.Clone(encodeOnly.Transcode)
	delete(encodeOnly.Transcode, "transcodeHwDecoding")
	encodeOnly.Transcode["transcodeHwFullPipeline"] = "0"
	paused := plextest.HardwareTranscode("Paused Film", "carol")
	paused.State = "paused"
	// decodeOnly decodes on NVDEC and encodes on the CPU: NVENC failed.
	decodeOnly := plextest.HardwareTranscode("Show E", "bob")
	decodeOnly.Transcode = maps.Clone(decodeOnly.Transcode)
	delete(decodeOnly.Transcode, "transcodeHwEncoding")
	decodeOnly.Transcode["transcodeHwFullPipeline"] = "0"
	// softwareByChoice: hardware transcoding is off in Plex's settings.
	softwareByChoice := plextest.SoftwareFallback("Movie F", "gina")
	softwareByChoice.Transcode = maps.Clone(softwareByChoice.Transcode)
	softwareByChoice.Transcode["transcodeHwRequested"] = "0"

	for _, tc := range []struct {
		name     string
		sessions []plextest.Session
		want     Activity
	}{
		{name: "idle", want: Activity{Detail: "no playback"}},
		{name: "one hardware transcode", sessions: []plextest.Session{plextest.HardwareTranscode("Movie A", "alice")},
			want: Activity{Active: true, Count: 1, Detail: "1 hardware transcode (nvdec → nvenc): Movie A"}},
		{name: "hardware beside direct play", sessions: []plextest.Session{
			plextest.HardwareTranscode("Movie A", "alice"), plextest.DirectPlay("Movie C", "dave"), encodeOnly,
		}, want: Activity{Active: true, Count: 2, Detail: "2 hardware transcodes (- → nvenc, nvdec → nvenc): Movie A, Show B"}},
		{name: "a paused transcode still holds the GPU", sessions: []plextest.Session{paused},
			want: Activity{Active: true, Count: 1, Detail: "1 hardware transcode (nvdec → nvenc): Paused Film"}},
		{name: "a CPU fallback is urgent", sessions: []plextest.Session{
			plextest.SoftwareFallback("Movie D", "erin"), plextest.DirectPlay("Movie C", "dave"),
		}, want: Activity{Active: true, Fallbacks: 1, Detail: "1 transcode fell back to the CPU although hardware was requested: Movie D"}},
		{name: "fallback beside hardware", sessions: []plextest.Session{
			plextest.HardwareTranscode("Movie A", "alice"), plextest.SoftwareFallback("Movie D", "erin"),
		}, want: Activity{Active: true, Count: 1, Fallbacks: 1,
			Detail: "1 transcode fell back to the CPU although hardware was requested: Movie D; 1 hardware transcode (nvdec → nvenc): Movie A"}},
		{name: "NVDEC with the encoder on the CPU is a fallback", sessions: []plextest.Session{decodeOnly},
			want: Activity{Active: true, Fallbacks: 1, Detail: "1 transcode fell back to the CPU although hardware was requested: Show E"}},
		{name: "software nobody asked the GPU for, Quick Sync, music and direct play", sessions: []plextest.Session{
			softwareByChoice, plextest.QuickSync("Up", "kim"), plextest.MusicTranscode("One More Time", "lee"),
			plextest.DirectPlay("Movie C", "dave"), plextest.DirectPlay("Movie E", "frank"),
		}, want: Activity{Detail: "no hardware transcode (1 music session, 1 non-NVIDIA hardware transcode, 1 software transcode, 2 direct plays)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := plextest.Start(token, tc.sessions...)
			defer srv.Close()
			p := &Plex{Client: &plexhealth.Client{URL: srv.URL, Token: token}}
			got, err := p.Activity(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPlexErrors(t *testing.T) {
	srv := plextest.Start("right", plextest.HardwareTranscode("Movie A", "alice"))
	defer srv.Close()
	p := &Plex{Client: &plexhealth.Client{URL: srv.URL, Token: "wrong"}}
	_, err := p.Activity(context.Background())
	wantErr(t, err, "reading Plex sessions", "token rejected", "PLEX_TOKEN")
	if p.Name() != "plex "+srv.URL {
		t.Errorf("Name() = %q", p.Name())
	}
	_, err = (&Plex{}).Activity(context.Background())
	wantErr(t, err, "no client")
}
