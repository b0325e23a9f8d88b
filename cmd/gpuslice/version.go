package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/internal/version"
)

func newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print gpuslice's version, the commit it was built from and its Go version",
		Long: `Print the version, the commit it was built from and the Go version. The
image built by hack/image carries the same version and commit in its
org.opencontainers.image.version and org.opencontainers.image.revision labels.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch format {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "text":
				_, err := fmt.Fprint(cmd.OutOrStdout(), info.Text())
				return err
			}
			return fmt.Errorf("--output %q: want text or json", format)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}
