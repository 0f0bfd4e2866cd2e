package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrNoCgroup2 means the host has no cgroup v2 hierarchy mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 filesystem in /proc/self/mountinfo")

// Mount returns the mount point of the cgroup v2 hierarchy, read from
// /proc/self/mountinfo (it is not always /sys/fs/cgroup: hybrid hosts mount
// it at /sys/fs/cgroup/unified). Without a cgroup v2 mount the error wraps
// ErrNoCgroup2.
func Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return parseMount(f)
}

// parseMount scans mountinfo lines (proc(5)): the mount point is field 5
// and the filesystem type follows the " - " separator.
func parseMount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if fstype, _, _ := strings.Cut(post, " "); fstype != "cgroup2" {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			return "", fmt.Errorf("finding cgroup v2 mount: malformed mountinfo line %q", line)
		}
		return unescapeMountinfo(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("finding cgroup v2 mount: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMountinfo undoes the kernel's octal escaping of space, tab,
// newline and backslash (\040, \011, \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Self returns the cgroup v2 path loopgate was started in, relative to the
// mount point ("/" or e.g. "/system.slice/loopgate.service"), from the
// "0::" line of /proc/self/cgroup: this process's cgroup, or, when that is
// a loopgate's leaf (see moveToLeaf: this loopgate moved there, or the
// loopgate that forked it for an upgrade did), the leaf's parent.
func Self() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("finding own cgroup: %w", err)
	}
	defer f.Close()
	p, err := parseSelf(f)
	if err != nil {
		return "", err
	}
	return homeOf(p), nil
}

func parseSelf(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			// A cgroup whose path is not visible from this cgroup namespace
			// shows as "/.." paths; those cannot be used.
			if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/..") {
				return "", fmt.Errorf("finding own cgroup: %q is outside this cgroup namespace", p)
			}
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("finding own cgroup: %w", err)
	}
	return "", fmt.Errorf("finding own cgroup: %w", ErrNoCgroup2)
}
