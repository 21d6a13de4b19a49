// Command exo is the single binary of the exo inference cluster.
package main

import (
	"os"

	"github.com/exo-nix/exo/appliance/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Assets{Dashboard: dashboard()}))
}
