// Package datadir prepares a node's data directory and makes sure only one node uses it.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockName is the lock file inside the data directory.
const LockName = "exo.lock"

// Dir is an open, locked data directory. Close releases the lock.
type Dir struct {
	Path string
	lock *os.File
}

// InUseError says another process holds the directory.
type InUseError struct {
	Path string
	PID  int // 0 when the holder could not be read
}

func (e *InUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("data directory %s is in use by another exo process (pid %d)", e.Path, e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by another exo process", e.Path)
}

// Open creates path with mode 0700 (tightening a looser existing mode) and takes an exclusive
// lock on it. The lock is an flock, so it disappears with the process even after a crash.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return nil, fmt.Errorf("restrict data directory %s to 0700: %w", path, err)
	}
	lockPath := filepath.Join(path, LockName)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Path: path, PID: readPID(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock %s: %w", lockPath, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock %s: %w", lockPath, err)
	}
	return &Dir{Path: path, lock: f}, nil
}

func readPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid
}

// Join returns a path inside the directory.
func (d *Dir) Join(elem ...string) string { return filepath.Join(append([]string{d.Path}, elem...)...) }

// Close releases the lock. The lock file stays; its content is stale once unlocked.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	// Empty the file while still holding the lock, so that it names a process only while that
	// process holds it: a node that opens the directory between another's lock and its pid
	// write must not be told it is held by a process that already let go.
	err := errors.Join(d.lock.Truncate(0), d.lock.Close())
	d.lock = nil
	return err
}
