package plexhealth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpuslice/gpuslice/internal/standin/plextest"
)

func TestClientReadsPlexXML(t *testing.T) {
	srv := plextest.Start("secret",
		plextest.HardwareTranscode("Dune", "jane"),
		plextest.SoftwareFallback("Alien", "sam"),
		plextest.DirectPlay("Heat", "alex"))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/", Token: "secret", HTTP: newHTTPClient(time.Second)}
	ctx := context.Background()

	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Version != "1.41.3.9314-a0bfb8370" || id.MachineIdentifier != "6a646027a56abb6dbdf72484564db8567c737430" || !id.Claimed {
		t.Errorf("identity %+v", id)
	}
	sessions, err := c.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 3 {
		t.Fatalf("sessions %+v", sessions)
	}
	hw, sw, direct := sessions[0], sessions[1], sessions[2]
	want := Transcode{VideoDecision: "transcode", AudioDecision: "transcode", HWRequested: true, HWFull: true, HWDecoding: "nvdec", HWEncoding: "nvenc", Speed: 3.2}
	if hw.Title != "Dune" || hw.User != "jane" || hw.Player != "Living Room TV" || hw.State != "playing" || hw.Type != "movie" || hw.Transcode == nil || *hw.Transcode != want {
		t.Errorf("hardware session %+v %+v", hw, hw.Transcode)
	}
	if sw.Transcode == nil || sw.Transcode.Hardware() != "software" || !sw.Transcode.HWRequested || sw.Transcode.Speed != 0.8 {
		t.Errorf("fallback session %+v %+v", sw, sw.Transcode)
	}
	if direct.Transcode != nil {
		t.Errorf("direct play has a transcode: %+v", direct.Transcode)
	}
	for i, tok := range srv.Tokens {
		if tok != "secret" {
			t.Errorf("request %d sent X-Plex-Token %q", i, tok)
		}
	}
}

func TestClientFailures(t *testing.T) {
	ctx := context.Background()

	srv := plextest.Start("secret", plextest.DirectPlay("Heat", "alex"))
	bad := &Client{URL: srv.URL, Token: "wrong", HTTP: newHTTPClient(time.Second)}
	if _, err := bad.Identity(ctx); err != nil {
		t.Errorf("identity needs no token: %v", err)
	}
	if _, err := bad.Sessions(ctx); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "check --token or PLEX_TOKEN") {
		t.Errorf("wrong token: %v", err)
	}
	url := srv.URL
	srv.Close()
	down := &Client{URL: url, HTTP: newHTTPClient(time.Second)}
	if _, err := down.Identity(ctx); err == nil || !strings.Contains(err.Error(), "no answer from Plex at "+url) {
		t.Errorf("server down: %v", err)
	}

	hung := plextest.Start("")
	defer hung.Close()
	hung.Hang = true
	start := time.Now()
	c := &Client{URL: hung.URL, HTTP: newHTTPClient(200 * time.Millisecond)}
	if _, err := c.Identity(ctx); err == nil || !strings.Contains(err.Error(), "to GET /identity within the timeout (raise --timeout") {
		t.Errorf("hung server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}
}

func TestTranscodeVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		t        Transcode
		hardware string
		problem  string
	}{
		{"NVDEC and NVENC", Transcode{VideoDecision: "transcode", HWRequested: true, HWFull: true, HWDecoding: "nvdec", HWEncoding: "nvenc", Speed: 3}, "full", ""},
		{"both sides named, pipeline flag off", Transcode{VideoDecision: "transcode", HWRequested: true, HWDecoding: "nvdec", HWEncoding: "nvenc", Speed: 2}, "full", ""},
		{"software decode, NVENC: fine", Transcode{VideoDecision: "transcode", HWRequested: true, HWEncoding: "nvenc", Speed: 1.5}, "encode", ""},
		{"NVDEC then software encode", Transcode{VideoDecision: "transcode", HWRequested: true, HWDecoding: "nvdec", Speed: 1.2}, "decode", "video encoded in software although hardware was requested"},
		{"fallback to software", Transcode{VideoDecision: "transcode", HWRequested: true, Speed: 1.1}, "software", "video encoded in software although hardware was requested"},
		{"software without asking: not a fallback", Transcode{VideoDecision: "transcode", Speed: 1.1}, "software", ""},
		{"slow and not throttled", Transcode{VideoDecision: "transcode", HWEncoding: "nvenc", Speed: 0.7}, "encode", "slower than real time (speed 0.7)"},
		{"slow because throttled: waiting for the player", Transcode{VideoDecision: "transcode", HWEncoding: "nvenc", Speed: 0.5, Throttled: true}, "encode", ""},
		{"audio only", Transcode{VideoDecision: "copy", AudioDecision: "transcode", HWRequested: true, Speed: 20}, "", ""},
	} {
		if got := tc.t.Hardware(); got != tc.hardware {
			t.Errorf("%s: hardware %q, want %q", tc.name, got, tc.hardware)
		}
		if got := tc.t.Problem(); tc.problem == "" && got != "" || !strings.Contains(got, tc.problem) {
			t.Errorf("%s: problem %q, want %q", tc.name, got, tc.problem)
		}
	}
}

// TestSessionGPUUse classifies sessions as Plex sends them: parsed from
// the stand-in's XML, not built by hand.
func TestSessionGPUUse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session plextest.Session
		use     GPUUse
		slow    bool
	}{
		{name: "NVDEC and NVENC", session: plextest.HardwareTranscode("Dune", "jane"), use: UseNVIDIA},
		{name: "CPU fallback", session: plextest.SoftwareFallback("Alien", "sam"), use: UseCPUFallback},
		{name: "slow NVENC, not throttled", session: plextest.SlowHardware("Heat", "alex"), use: UseNVIDIA, slow: true},
		{name: "Intel Quick Sync", session: plextest.QuickSync("Up", "kim"), use: UseOtherGPU},
		{name: "music never counts", session: plextest.MusicTranscode("One More Time", "lee"), use: UseNone},
		{name: "direct play", session: plextest.DirectPlay("Heat", "alex"), use: UseNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := plextest.Start("secret", tc.session)
			defer srv.Close()
			sessions, err := (&Client{URL: srv.URL, Token: "secret"}).Sessions(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(sessions) != 1 {
				t.Fatalf("sessions %+v", sessions)
			}
			if got := sessions[0].GPUUse(); got != tc.use {
				t.Errorf("GPUUse() = %q, want %q", got, tc.use)
			}
			if got := sessions[0].SlowHardware(); got != tc.slow {
				t.Errorf("SlowHardware() = %v, want %v", got, tc.slow)
			}
		})
	}
}

// TestTokenStaysOnItsHost: a redirect to another host gets neither the
// X-Plex-Token header nor the query parameter; one on the same host does.
func TestTokenStaysOnItsHost(t *testing.T) {
	type seen struct{ header, query string }
	got := make(chan seen, 1)
	stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Plex-Token"), r.URL.Query().Get("X-Plex-Token")}
		_, _ = w.Write([]byte(`<MediaContainer size="0"></MediaContainer>`))
	}))
	defer stranger.Close()
	plex := plextest.Start("secret")
	defer plex.Close()
	// A proxy at Plex's URL that sends /status/sessions elsewhere, and
	// /moved back to Plex itself.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved/status/sessions" {
			http.Redirect(w, r, plex.URL+"/status/sessions", http.StatusFound)
			return
		}
		http.Redirect(w, r, strings.Replace(stranger.URL, "127.0.0.1", "localhost", 1)+"/status/sessions?X-Plex-Token=secret", http.StatusFound)
	}))
	defer front.Close()
	for name, hc := range map[string]*http.Client{"default client": nil, "caller's client": newHTTPClient(5 * time.Second)} {
		t.Run(name, func(t *testing.T) {
			c := &Client{URL: front.URL, Token: "secret", HTTP: hc}
			if _, err := c.Sessions(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s := <-got; s != (seen{}) {
				t.Errorf("the other host got the token: %+v", s)
			}
			// Plex on the same host (127.0.0.1, another port) still gets it.
			c.URL = front.URL + "/moved"
			if _, err := c.Sessions(context.Background()); err != nil {
				t.Errorf("same-host redirect lost the token: %v", err)
			}
		})
	}
}

func TestParseSessionsSeed(t *testing.T) {
	f, err := os.Open("testdata/sessions-transcodes.xml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sessions, err := ParseSessions(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 3 || sessions[0].Title != "Dune" || sessions[0].Transcode.Hardware() != "full" || sessions[1].Type != "track" ||
		sessions[1].Title != "Daft Punk: Veridis Quo" || sessions[2].Transcode.Hardware() != "software" {
		t.Errorf("sessions %+v", sessions)
	}
}
