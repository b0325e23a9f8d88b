package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/output"
)

// printFlags is -o, the same for every command: a table for people by
// default (wide where the command has one), json or yaml for scripts.
type printFlags struct {
	format string
	// wide says whether the command has a wide table; dataOnly that it
	// has no table at all (it writes manifests).
	wide, dataOnly bool
}

// addPrintFlags adds -o to cmd.
func addPrintFlags(cmd *cobra.Command, wide bool) *printFlags {
	p := &printFlags{wide: wide}
	formats := "table (default), json or yaml"
	if wide {
		formats = "table (default), wide, json or yaml"
	}
	cmd.Flags().StringVarP(&p.format, "output", "o", "", "output format: "+formats)
	return p
}

// addDataFlags adds -o for a command that writes data only: yaml by
// default, or json.
func addDataFlags(cmd *cobra.Command) *printFlags {
	p := &printFlags{dataOnly: true}
	cmd.Flags().StringVarP(&p.format, "output", "o", output.YAML, "output format: yaml or json")
	return p
}

// Validate refuses an unknown format before anything runs.
func (p *printFlags) Validate() error {
	if p.dataOnly && !p.structured() {
		return fmt.Errorf("unknown output format %q: use yaml or json", p.format)
	}
	return output.Check(p.format, p.wide)
}

// structured says whether -o asks for data rather than a table.
func (p *printFlags) structured() bool { return output.IsStructured(p.format) }

// isWide says whether -o wide was asked for.
func (p *printFlags) isWide() bool { return p.format == output.Wide }

// print writes v as json or yaml, or calls table for people.
func (p *printFlags) print(w io.Writer, v any, table func(io.Writer) error) error {
	if p.structured() {
		return output.Write(w, p.format, v)
	}
	return table(w)
}
