// Package plextest is a stand-in Plex Media Server for tests: it answers
// GET /identity and GET /status/sessions with the XML Plex documents
// (MediaContainer with Video or Track children carrying User, Player,
// Session and TranscodeSession), checks the X-Plex-Token header like Plex
// (401 without the right one), and can hang to exercise client timeouts.
//
// It writes the XML by hand, attribute by attribute as Plex sends it
// ("1"/"0" booleans), rather than with plexhealth's types, so that the
// parser is tested against the wire format and not against itself.
package plextest

import (
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
)

// Session is one playback: the element (Video, Track), its attributes,
// and the attributes of its User, Player and TranscodeSession (nil for
// direct play).
type Session struct {
	Element   string
	Attrs     map[string]string
	User      string
	Player    string
	State     string
	Transcode map[string]string
}

// HardwareTranscode is a movie transcoded on an NVIDIA GPU end to end.
func HardwareTranscode(title, user string) Session {
	return video(title, user, "Living Room TV", map[string]string{
		"key": "/transcode/sessions/hw1", "throttled": "0", "complete": "0", "progress": "12.5", "speed": "3.2",
		"context": "streaming", "sourceVideoCodec": "hevc", "sourceAudioCodec": "eac3", "videoDecision": "transcode",
		"audioDecision": "transcode", "protocol": "dash", "container": "mp4", "videoCodec": "h264", "audioCodec": "aac",
		"audioChannels": "2", "width": "1920", "height": "1080",
		"transcodeHwRequested": "1", "transcodeHwDecoding": "nvdec", "transcodeHwDecodingTitle": "NVIDIA (NVDEC)",
		"transcodeHwEncoding": "nvenc", "transcodeHwEncodingTitle": "NVIDIA (NVENC)", "transcodeHwFullPipeline": "1",
	})
}

// SoftwareFallback is a transcode that asked for the GPU and ran on the
// CPU, slower than real time: what Plex does when NVENC is unavailable.
func SoftwareFallback(title, user string) Session {
	return video(title, user, "iPad", map[string]string{
		"key": "/transcode/sessions/sw1", "throttled": "0", "complete": "0", "progress": "3.1", "speed": "0.8",
		"context": "streaming", "sourceVideoCodec": "hevc", "sourceAudioCodec": "aac", "videoDecision": "transcode",
		"audioDecision": "copy", "protocol": "hls", "container": "mpegts", "videoCodec": "h264", "audioCodec": "aac",
		"transcodeHwRequested": "1", "transcodeHwFullPipeline": "0",
	})
}

// SlowHardware is a hardware transcode slower than real time while not
// throttled: the GPU is on it, but overloaded.
func SlowHardware(title, user string) Session {
	s := HardwareTranscode(title, user)
	s.Transcode = maps.Clone(s.Transcode)
	s.Transcode["speed"] = "0.7"
	return s
}

// QuickSync is a transcode on Intel Quick Sync (VA-API through /dev/dri):
// hardware, but not an NVIDIA GPU.
func QuickSync(title, user string) Session {
	s := HardwareTranscode(title, user)
	s.Player = "Roku"
	s.Transcode = maps.Clone(s.Transcode)
	maps.Copy(s.Transcode, map[string]string{
		"key": "/transcode/sessions/qsv1", "speed": "2.4",
		"transcodeHwDecoding": "vaapi", "transcodeHwDecodingTitle": "Intel (VA-API)",
		"transcodeHwEncoding": "vaapi", "transcodeHwEncodingTitle": "Intel (VA-API)",
	})
	return s
}

// MusicTranscode is a Track (music) session whose audio is transcoded:
// Plex still says transcodeHwRequested="1", but no video is involved.
func MusicTranscode(title, user string) Session {
	return Session{
		Element: "Track",
		Attrs: map[string]string{"type": "track", "title": title, "grandparentTitle": "Daft Punk", "parentTitle": "Discovery",
			"sessionKey": "7", "key": "/library/metadata/5678"},
		User: user, Player: "Plexamp", State: "playing",
		Transcode: map[string]string{
			"key": "/transcode/sessions/audio1", "throttled": "1", "complete": "0", "progress": "55.0", "speed": "12.0",
			"context": "streaming", "sourceAudioCodec": "flac", "audioDecision": "transcode", "protocol": "http",
			"container": "mp3", "audioCodec": "mp3", "audioChannels": "2", "transcodeHwRequested": "1",
		},
	}
}

// DirectPlay is a session without a transcode.
func DirectPlay(title, user string) Session {
	return video(title, user, "Chrome", nil)
}

func video(title, user, player string, transcode map[string]string) Session {
	return Session{
		Element: "Video",
		Attrs:   map[string]string{"type": "movie", "title": title, "year": "2021", "sessionKey": "1", "key": "/library/metadata/1234"},
		User:    user, Player: player, State: "playing", Transcode: transcode,
	}
}

// Server is the stand-in. Set its fields before the first request, or
// under Lock.
type Server struct {
	*httptest.Server
	sync.Mutex
	// Token is required as X-Plex-Token on /status/sessions; /identity
	// answers without one, as Plex does.
	Token             string
	MachineIdentifier string
	Version           string
	Sessions          []Session
	// Hang makes every request wait until the client gives up or the
	// server closes.
	Hang bool
	// Tokens records the X-Plex-Token of each request.
	Tokens []string

	closing chan struct{}
}

// Port is Plex's port; TranscodeSwitchPath is where the real-node
// harness's stand-in Plex (testbox plex) takes POST ?on=true|false to
// start or end a hardware transcode.
const (
	Port                = 32400
	TranscodeSwitchPath = "/gpuslice-test/transcode"
)

// Start runs a stand-in Plex on loopback.
func Start(token string, sessions ...Session) *Server {
	s := New(token, sessions...)
	s.Server = httptest.NewServer(s)
	return s
}

// New is a stand-in Plex to serve on a listener of one's own (the
// real-node harness's container); its embedded httptest.Server is nil.
func New(token string, sessions ...Session) *Server {
	return &Server{
		Token: token, MachineIdentifier: "6a646027a56abb6dbdf72484564db8567c737430", Version: "1.41.3.9314-a0bfb8370",
		Sessions: sessions, closing: make(chan struct{}),
	}
}

// ServeHTTP answers as Plex does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r) }

// SetSessions replaces what /status/sessions answers.
func (s *Server) SetSessions(sessions ...Session) {
	s.Lock()
	defer s.Unlock()
	s.Sessions = sessions
}

// SetTranscoding makes the server report one hardware transcode, or no
// playback at all: the signal the arbiter reacts to.
func (s *Server) SetTranscoding(on bool) {
	if on {
		s.SetSessions(HardwareTranscode("Dune: Part Two", "alice"))
		return
	}
	s.SetSessions()
}

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	close(s.closing)
	if s.Server != nil {
		s.Server.Close()
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.Lock()
	s.Tokens = append(s.Tokens, r.Header.Get("X-Plex-Token"))
	hang, token := s.Hang, s.Token
	s.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	}
	var body string
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/identity":
		s.Lock()
		body = fmt.Sprintf(`<MediaContainer size="0" claimed="1" machineIdentifier="%s" version="%s"> </MediaContainer>`,
			attr(s.MachineIdentifier), attr(s.Version))
		s.Unlock()
	case "/status/sessions":
		if token != "" && r.Header.Get("X-Plex-Token") != token {
			// Plex answers 401 with an HTML body.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>")
			return
		}
		body = s.sessionsXML()
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=utf-8")
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+body+"\n")
}

func (s *Server) sessionsXML() string {
	s.Lock()
	defer s.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, `<MediaContainer size="%d">`+"\n", len(s.Sessions))
	for i, ses := range s.Sessions {
		fmt.Fprintf(&b, "<%s%s>\n", ses.Element, attrs(ses.Attrs))
		// Media and Part come first in Plex's answer; the parser must skip them.
		if ses.Element == "Track" {
			fmt.Fprintf(&b, `<Media id="%d" audioCodec="flac" audioChannels="2" container="flac" selected="1"><Part id="%d" decision="transcode" selected="1"><Stream id="%d" streamType="2" codec="flac" selected="1"/></Part></Media>`+"\n", 350100+i, 350400+i, 350700+i)
		} else {
			fmt.Fprintf(&b, `<Media id="%d" videoResolution="1080" selected="1"><Part id="%d" decision="transcode" selected="1"/></Media>`+"\n", 350100+i, 350400+i)
		}
		fmt.Fprintf(&b, `<User id="%d" title="%s"/>`+"\n", i+1, attr(ses.User))
		fmt.Fprintf(&b, `<Player address="10.0.0.%d" machineIdentifier="player-%d" platform="Linux" product="Plex Web" state="%s" title="%s" local="1"/>`+"\n",
			10+i, i, attr(ses.State), attr(ses.Player))
		fmt.Fprintf(&b, `<Session id="session-%d" bandwidth="10000" location="lan"/>`+"\n", i)
		if ses.Transcode != nil {
			fmt.Fprintf(&b, "<TranscodeSession%s/>\n", attrs(ses.Transcode))
		}
		fmt.Fprintf(&b, "</%s>\n", ses.Element)
	}
	b.WriteString("</MediaContainer>")
	return b.String()
}

func attrs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, ` %s="%s"`, k, attr(m[k]))
	}
	return b.String()
}

func attr(s string) string { return html.EscapeString(s) }
