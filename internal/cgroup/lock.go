package cgroup

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// A tree's lock says its loopgate, or the keeper cleaning up after it,
// still runs: an exclusive flock on the tree's directory, taken as the
// tree is made and held for loopgate's life, and shared with the keeper,
// which inherits the descriptor (so it outlives a SIGKILLed loopgate until
// the keeper is done). The kernel drops it with the last of them. The
// sweep (sweep.go) takes it before it touches a tree: unlike a pid, it
// holds across PID namespaces (a loopgate in a container without a cgroup
// namespace, or under unshare --pid, names its tree for a pid the others
// cannot see) and cannot be reused.

// errTreeRemoved means a sweep removed the directory between its mkdir and
// its lock: make it again.
var errTreeRemoved = errors.New("removed while being locked")

// lockTree takes dir's lock, waiting for a sweep that holds it, and checks
// that dir is still the directory it locked.
func lockTree(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	var locked, now syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &locked); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := syscall.Stat(dir, &now); err != nil || now.Ino != locked.Ino || now.Dev != locked.Dev {
		f.Close()
		return nil, errTreeRemoved
	}
	return f, nil
}

// tryLockTree takes dir's lock if nobody holds it: nil if its loopgate or
// keeper runs (or dir is gone).
func tryLockTree(dir string) *os.File {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil
	}
	return f
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}
