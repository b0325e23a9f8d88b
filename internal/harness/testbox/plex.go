package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/gpuslice/gpuslice/internal/standin/plextest"
)

// plex serves the stand-in Plex, without a token, until SIGTERM.
func plex() error {
	s := plextest.New("")
	mux := http.NewServeMux()
	mux.Handle("/", s)
	mux.HandleFunc(plextest.TranscodeSwitchPath, func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if r.Method != http.MethodPost || err != nil {
			http.Error(w, "want POST ?on=true|false", http.StatusBadRequest)
			return
		}
		s.SetTranscoding(on)
		fmt.Fprintf(w, "transcoding: %v\n", on)
	})
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(plextest.Port))
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, mux) }()
	wait()
	return nil
}
