package node

import (
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells a supervisor about the node's state. Systemd is the real one; outside systemd
// every call is a no-op.
type Notifier interface {
	Ready(status string) error
	Stopping() error
	// StartWatchdog pings the supervisor's watchdog until the returned function is called.
	StartWatchdog(log *slog.Logger) (stop func())
}

// Systemd notifies through $NOTIFY_SOCKET (sd_notify).
type Systemd struct{}

// Ready sends READY=1 with a status line.
func (Systemd) Ready(status string) error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status)
	return err
}

// Stopping sends STOPPING=1.
func (Systemd) Stopping() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// StartWatchdog pings WATCHDOG=1 at half of $WATCHDOG_USEC, as systemd recommends.
func (Systemd) StartWatchdog(log *slog.Logger) func() {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("cannot read the systemd watchdog settings", "err", err)
		return func() {}
	}
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
					log.Warn("watchdog ping failed", "err", err)
				}
			}
		}
	}()
	return func() { close(done) }
}
