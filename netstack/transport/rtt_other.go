//go:build !linux

package transport

import (
	"net"
	"time"
)

// tcpRTT is only implemented where TCP_INFO exists.
func tcpRTT(net.Conn) time.Duration { return 0 }
