package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/exo-nix/exo/appliance/config"
)

func init() { addCommand(newConfigCmd) }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show or validate configuration"}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (defaults < file < environment < flags), secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(loaded.Redacted())
			}
			enc := yaml.NewEncoder(out)
			enc.SetIndent(2)
			if err := enc.Encode(loaded.Redacted()); err != nil {
				return err
			}
			return enc.Close()
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	addConfigFlags(show.Flags(), true)
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file: unknown keys, wrong types and out-of-range values exit with status 2",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err != nil {
				return usageError{fmt.Errorf("config file: %w", err)}
			}
			// Only the file is judged: the environment of the shell running the check is not the
			// node's environment.
			if _, err := config.Load(config.Sources{File: args[0], Environ: []string{"HOME=" + os.Getenv("HOME")}}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(show, validate)
	return cmd
}
