package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/buildinfo"
)

func versionCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Which fedstat this is: release, commit, Go version and the key libraries",
		Long: `version prints fedstat's release version, the commit the binary was built from (and
whether the work tree had changes), the Go version and platform, and the versions of the
libraries a network depends on (Lattigo, Google's DP library, gRPC, memberlist, Badger,
ristretto255), as the Go toolchain recorded them in the binary. fedstat --version prints
the first line. The daemons export the same as the metric fedstat_build_info.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Get()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(bi)
			}
			_, err := fmt.Fprint(cmd.OutOrStdout(), bi.Long())
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}
