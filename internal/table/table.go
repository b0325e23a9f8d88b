// Package table makes the column writer every kubectl-like table of
// gpuslice uses. It is pure (the standard library only), so the pure
// packages' tables do not link cli-runtime's printers and client-go.
package table

import (
	"io"
	"text/tabwriter"
)

// NewWriter is a tabwriter with kubectl's printer settings (those of
// cli-runtime's printers.GetNewTabWriter). Flush it when done.
func NewWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}
