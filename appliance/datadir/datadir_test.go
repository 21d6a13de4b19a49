package datadir

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOpenCreatesPrivateDirAndLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	// flock conflicts between file descriptions, so a second Open in this process must fail too.
	_, err = Open(path)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second open: %v", err)
	}
	if !strings.Contains(err.Error(), "pid") {
		t.Errorf("error does not name the pid: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Released, the lock names no process (a stale pid would be blamed for the next holder).
	if raw, err := os.ReadFile(filepath.Join(path, LockName)); err != nil || len(raw) != 0 {
		t.Fatalf("lock file after Close: %q, %v; want it empty", raw, err)
	}
	d2, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	d2.Close()
}

func TestLockHeldByOtherProcess(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed: util-linux is needed for the cross-process check")
	}
	path := t.TempDir()
	lock := filepath.Join(path, LockName)
	// The holder writes its own pid after taking the lock, as exo does.
	cmd := exec.Command("flock", "--exclusive", lock, "sh", "-c", "echo $$ > "+lock+"; exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for i := 0; ; i++ {
		d, err := Open(path)
		var inUse *InUseError
		if errors.As(err, &inUse) && inUse.PID == 0 && i < 500 {
			time.Sleep(10 * time.Millisecond) // locked, pid not written yet
			continue
		}
		if errors.As(err, &inUse) {
			if inUse.PID <= 0 || inUse.PID == os.Getpid() {
				t.Fatalf("pid %d: want the holder's", inUse.PID)
			}
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(inUse.PID))); err != nil {
				t.Fatalf("named pid %d is not a live process", inUse.PID)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		d.Close() // the holder has not started yet
		if i > 500 {
			t.Fatal("holder never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
