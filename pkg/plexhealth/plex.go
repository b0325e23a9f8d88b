package plexhealth

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrUnauthorized is returned (wrapped) when Plex rejects the token.
var ErrUnauthorized = errors.New("token rejected by Plex (401 Unauthorized)")

// Server is what GET /identity says.
type Server struct {
	URL               string `json:"url"`
	MachineIdentifier string `json:"machineIdentifier"`
	Version           string `json:"version"`
	Claimed           bool   `json:"claimed"`
}

// Session is one playback from GET /status/sessions.
type Session struct {
	Type   string `json:"type"` // movie, episode, track, ...
	Title  string `json:"title"`
	User   string `json:"user,omitempty"`
	Player string `json:"player,omitempty"`
	State  string `json:"state,omitempty"` // playing, paused, buffering
	// Transcode is nil for direct play.
	Transcode *Transcode `json:"transcode,omitempty"`
}

// Transcode is a session's TranscodeSession element.
type Transcode struct {
	VideoDecision string  `json:"videoDecision,omitempty"` // transcode, copy, directplay
	AudioDecision string  `json:"audioDecision,omitempty"`
	HWRequested   bool    `json:"hwRequested"`
	HWFull        bool    `json:"hwFullPipeline"`
	HWDecoding    string  `json:"hwDecoding,omitempty"` // nvdec, vaapi, qsv, ...
	HWEncoding    string  `json:"hwEncoding,omitempty"` // nvenc, vaapi, qsv, ...
	Speed         float64 `json:"speed"`
	Throttled     bool    `json:"throttled"`
}

// Client reads the Plex Media Server API. Plex answers XML; the token goes
// in the X-Plex-Token header, never the URL, so it stays out of logs.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Identity reads GET /identity, which answers without a token.
func (c *Client) Identity(ctx context.Context) (*Server, error) {
	var mc struct {
		MachineIdentifier string `xml:"machineIdentifier,attr"`
		Version           string `xml:"version,attr"`
		Claimed           string `xml:"claimed,attr"`
	}
	if err := c.get(ctx, "/identity", &mc); err != nil {
		return nil, err
	}
	return &Server{URL: c.URL, MachineIdentifier: mc.MachineIdentifier, Version: mc.Version, Claimed: plexBool(mc.Claimed)}, nil
}

// sessionXML is a child of /status/sessions' MediaContainer: Video, Track
// or Photo, with User, Player and (when transcoding) TranscodeSession.
type sessionXML struct {
	XMLName          xml.Name
	Type             string `xml:"type,attr"`
	Title            string `xml:"title,attr"`
	GrandparentTitle string `xml:"grandparentTitle,attr"`
	User             struct {
		Title string `xml:"title,attr"`
	} `xml:"User"`
	Player struct {
		Title string `xml:"title,attr"`
		State string `xml:"state,attr"`
	} `xml:"Player"`
	Transcode *struct {
		VideoDecision string `xml:"videoDecision,attr"`
		AudioDecision string `xml:"audioDecision,attr"`
		HWRequested   string `xml:"transcodeHwRequested,attr"`
		HWFull        string `xml:"transcodeHwFullPipeline,attr"`
		HWDecoding    string `xml:"transcodeHwDecoding,attr"`
		HWEncoding    string `xml:"transcodeHwEncoding,attr"`
		Speed         string `xml:"speed,attr"`
		Throttled     string `xml:"throttled,attr"`
	} `xml:"TranscodeSession"`
}

// sessionsXML is /status/sessions' MediaContainer.
type sessionsXML struct {
	Items []sessionXML `xml:",any"`
}

// Sessions reads GET /status/sessions.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var mc sessionsXML
	if err := c.get(ctx, "/status/sessions", &mc); err != nil {
		return nil, err
	}
	return mc.sessions(), nil
}

// ParseSessions reads a /status/sessions answer, as Sessions does.
func ParseSessions(r io.Reader) ([]Session, error) {
	var mc sessionsXML
	if err := xml.NewDecoder(r).Decode(&mc); err != nil {
		return nil, err
	}
	return mc.sessions(), nil
}

func (mc sessionsXML) sessions() []Session {
	out := []Session{}
	for _, it := range mc.Items {
		s := Session{Type: it.Type, Title: it.Title, User: it.User.Title, Player: it.Player.Title, State: it.Player.State}
		if s.Type == "" {
			s.Type = strings.ToLower(it.XMLName.Local)
		}
		if it.GrandparentTitle != "" {
			s.Title = it.GrandparentTitle + ": " + it.Title
		}
		if t := it.Transcode; t != nil {
			speed, _ := strconv.ParseFloat(t.Speed, 64)
			s.Transcode = &Transcode{
				VideoDecision: t.VideoDecision, AudioDecision: t.AudioDecision,
				HWRequested: plexBool(t.HWRequested), HWFull: plexBool(t.HWFull),
				HWDecoding: t.HWDecoding, HWEncoding: t.HWEncoding,
				Speed: speed, Throttled: plexBool(t.Throttled),
			}
		}
		out = append(out, s)
	}
	return out
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	url := strings.TrimRight(c.URL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bad Plex URL %q: %w; pass --url like http://plex.media.svc:32400", c.URL, err)
	}
	req.Header.Set("Accept", "application/xml")
	if c.Token != "" {
		req.Header.Set(tokenHeader, c.Token)
	}
	resp, err := keepTokenHome(c.HTTP).Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer from Plex at %s to GET %s within the timeout (raise --timeout if it is just slow): %w", c.URL, path, err)
		}
		return fmt.Errorf("no answer from Plex at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("GET %s%s: %w: check --token or PLEX_TOKEN", c.URL, path, ErrUnauthorized)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("GET %s%s: Plex answered %s", c.URL, path, resp.Status)
	}
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(into); err != nil {
		return fmt.Errorf("reading Plex's answer to GET %s%s: %w", c.URL, path, err)
	}
	return nil
}

// plexBool reads Plex's "1"/"0" (and JSON's true/false).
func plexBool(s string) bool { return s == "1" || s == "true" }

// Hardware says how a transcode uses the GPU: "full" (hardware decode and
// encode), "encode" or "decode" (one side in hardware), "software", or ""
// when the video is not transcoded (copy, direct play, audio only).
func (t *Transcode) Hardware() string {
	switch {
	case t.VideoDecision != "transcode":
		return ""
	case t.HWFull || t.HWDecoding != "" && t.HWEncoding != "":
		return "full"
	case t.HWEncoding != "":
		return "encode"
	case t.HWDecoding != "":
		return "decode"
	}
	return "software"
}

// FellBack says whether the video is encoded on the CPU although hardware
// was requested: the GPU was busy, out of memory, or not visible to Plex.
// Plex keeps such a session on the CPU until it restarts, so it stutters
// for as long as it lasts: the failure the arbiter exists to prevent.
func (t *Transcode) FellBack() bool {
	hw := t.Hardware()
	return t.HWRequested && (hw == "software" || hw == "decode")
}

// Slow says whether the transcode runs slower than real time although it
// is not just waiting for the player (throttled): playback will buffer.
func (t *Transcode) Slow() bool { return t.Speed > 0 && t.Speed < 1 && !t.Throttled }

// NVIDIA says whether the transcode uses an NVIDIA GPU (NVDEC, NVENC or
// CUDA), as opposed to Intel Quick Sync (VA-API, QSV) or another vendor's.
func (t *Transcode) NVIDIA() bool { return nvidiaCodec(t.HWDecoding) || nvidiaCodec(t.HWEncoding) }

func nvidiaCodec(name string) bool {
	name = strings.ToLower(name)
	return strings.HasPrefix(name, "nv") || name == "cuda"
}

// GPUUse is how a session uses a GPU, as the arbiter and plex-health judge it.
type GPUUse string

// Uses of a GPU.
const (
	// UseNone: no video transcode (direct play, direct stream, music).
	UseNone GPUUse = "none"
	// UseNVIDIA: video transcoded on an NVIDIA GPU, in full or in part.
	UseNVIDIA GPUUse = "nvidia"
	// UseOtherGPU: video transcoded on another GPU (Intel Quick Sync):
	// no NVIDIA memory at stake.
	UseOtherGPU GPUUse = "other-gpu"
	// UseCPUFallback: hardware was requested and the video is encoded on
	// the CPU (Transcode.FellBack).
	UseCPUFallback GPUUse = "cpu-fallback"
	// UseSoftware: video transcoded on the CPU, as Plex was told to.
	UseSoftware GPUUse = "software"
)

// GPUUse classifies the session. Music (Track) sessions never count: they
// transcode audio only.
func (s Session) GPUUse() GPUUse {
	t := s.Transcode
	switch {
	case t == nil || s.Type == "track" || t.Hardware() == "":
		return UseNone
	case t.FellBack():
		return UseCPUFallback
	case t.Hardware() == "software":
		return UseSoftware
	case t.NVIDIA():
		return UseNVIDIA
	}
	return UseOtherGPU
}

// SlowHardware says whether a hardware transcode runs slower than real
// time while not throttled: worth a warning, not yet a fallback.
func (s Session) SlowHardware() bool {
	u := s.GPUUse()
	return (u == UseNVIDIA || u == UseOtherGPU) && s.Transcode.Slow()
}

// Problem is what is wrong with a transcode, "" when nothing is: video
// encoded in software although hardware was requested (FellBack), or a
// transcode slower than real time that is not just waiting for the player
// (Slow).
func (t *Transcode) Problem() string {
	var p []string
	if t.FellBack() {
		p = append(p, "video encoded in software although hardware was requested: it fell back to the CPU (GPU busy, out of memory or not visible to Plex?)")
	}
	if t.Slow() {
		p = append(p, fmt.Sprintf("transcoding slower than real time (speed %s): playback will buffer", strconv.FormatFloat(t.Speed, 'f', -1, 64)))
	}
	return strings.Join(p, "; ")
}

// describe is the transcode in one phrase: "hardware nvdec → nvenc, speed 3.1".
func (t *Transcode) describe() string {
	var s string
	switch hw := t.Hardware(); hw {
	case "":
		s = "video " + orDash(t.VideoDecision) + ", audio " + orDash(t.AudioDecision)
	case "software":
		s = "software transcode"
	default:
		s = "hardware " + orDash(t.HWDecoding) + " → " + orDash(t.HWEncoding)
		if hw != "full" {
			s += " (" + hw + " only)"
		}
	}
	if t.Speed > 0 {
		s += ", speed " + strconv.FormatFloat(t.Speed, 'f', -1, 64)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tokenHeader carries Plex's token; Plex also accepts it as a query
// parameter of the same name.
const tokenHeader = "X-Plex-Token"

// keepTokenHome is hc (or the default client) whose redirects carry the
// token only to the host it was meant for, and never from HTTPS to plain
// HTTP: Go's client forwards every header but a few standard ones across
// hosts, so a redirect from Plex, or from whatever answers at its URL,
// would otherwise hand the token to a stranger.
func keepTokenHome(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	next := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		if !strings.EqualFold(req.URL.Hostname(), first.Hostname()) || (first.Scheme == "https" && req.URL.Scheme != "https") {
			req.Header.Del(tokenHeader)
			if q := req.URL.Query(); q.Has(tokenHeader) {
				q.Del(tokenHeader)
				req.URL.RawQuery = q.Encode()
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// newHTTPClient is a client that gives up after timeout: a hung Plex must
// fail the check, not hang it.
func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout}
}
