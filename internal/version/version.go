// Package version is gpuslice's build identity. hack/image stamps Version
// and Commit with -ldflags -X, and labels the image with the same values.
package version

import (
	"fmt"
	"runtime"
)

// Set at link time: go build -ldflags "-X
// github.com/gpuslice/gpuslice/internal/version.Version=0.1.0 -X ...Commit=<sha>".
var (
	Version = "dev"
	Commit  = "unknown"
)

// Info is what `gpuslice version` prints.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// Get returns this binary's identity.
func Get() Info { return Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()} }

// Text is the plain form both binaries print: one "key: value" line each.
func (i Info) Text() string {
	return fmt.Sprintf("version: %s\ncommit: %s\ngo: %s\n", i.Version, i.Commit, i.GoVersion)
}
