// Package filestamp tells whether a file has changed since it was last
// read, for certificates and configuration that are reloaded without a
// restart.
package filestamp

import (
	"os"
	"syscall"
	"time"
)

// Stamp identifies one version of a file. The inode matters: a rotation
// replaces the file (rename, or a Secret or ConfigMap volume's symlink swap)
// and may keep its size and, on coarse clocks, its modification time.
type Stamp struct {
	mod   time.Time
	size  int64
	inode uint64
}

// Of stats path, following symlinks (the ..data link of a mounted volume).
func Of(path string) (Stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	s := Stamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = st.Ino
	}
	return s, nil
}
