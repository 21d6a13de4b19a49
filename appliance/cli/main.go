package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/config"
	"github.com/exo-nix/exo/appliance/node"
)

// Assets are the files built into the binary (the dashboard).
type Assets = node.Assets

var assets Assets

// Exit codes: 2 is a usage or configuration error, as for most Unix tools.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// usageError marks a bad command line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// Main runs the command line and returns the process exit status.
func Main(args []string, a Assets) int {
	assets = a
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	root := Root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "exo:", err)
	var ue usageError
	if config.IsConfigError(err) || errors.As(err, &ue) {
		return exitConfig
	}
	return exitFail
}
