// Package nixtest checks the Nix side of exo against the real binary on machines without NixOS:
// the pure helpers in nix/lib (evaluated with nix-instantiate) generate the systemd units the NixOS
// module deploys, and these tests feed their argument lists to exo's own flag parser, start the
// units' commands under a simulated systemd (state, runtime and credentials directories, notify
// socket, After=/Before= order, the join token oneshot between a master and the units that join
// it), and score the rendered unit files with systemd-analyze security.
//
// The tests need nix-instantiate (Debian: nix-bin) and systemd-analyze (Debian: systemd). Without
// them they skip with the reason, except under CI=true, where that is a failure.
package nixtest
