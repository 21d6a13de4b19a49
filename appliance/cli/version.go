package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/buildinfo"
)

func init() { addCommand(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, Go version, build tags and CPU features",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Get()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(bi)
			}
			tags := strings.Join(bi.BuildTags, ",")
			if tags == "" {
				tags = "(none)"
			}
			fmt.Fprintf(out, "exo %s\ncommit:       %s\ngo:           %s %s/%s\nbuild tags:   %s\ncpu features: %s\n",
				bi.Version, bi.Commit, bi.GoVersion, bi.OS, bi.Arch, tags, strings.Join(bi.CPUFeatures, " "))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
