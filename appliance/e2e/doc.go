// Package e2e holds tests that build the exo binary and run it as separate processes, the way
// an operator or systemd runs it.
package e2e
