// Package cli builds the exo command tree. It parses arguments and hands them to the packages
// that do the work; no behaviour lives here.
package cli

import (
	"github.com/spf13/cobra"
)

// commands holds constructors of top-level subcommands; each command file adds its own in init so
// that the command tree is assembled in one place without a central list to edit.
var commands []func() *cobra.Command

func addCommand(f func() *cobra.Command) { commands = append(commands, f) }

// Root returns the `exo` command with every subcommand attached.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "exo",
		Short:         "exo turns a set of Linux machines into one LLM inference cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}
