package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Usage is what the processes of one app have used.
type Usage struct {
	// CPU is the user and system CPU time of every process that has run in
	// the app's cgroup since loopgate started, those that have exited
	// included (cpu.stat usage_usec, kept by the kernel in the parent when
	// a process's cgroup is removed).
	CPU time.Duration
	// Memory is in bytes: memory.current (what the memory controller
	// charges: anonymous memory, page cache, kernel memory) where the
	// memory controller is enabled for loopgate's cgroups, otherwise the
	// sum of the resident set sizes (VmRSS) of the app's live processes,
	// which counts shared pages once per process.
	Memory int64
	// MemorySource says which: "memory.current" or "rss".
	MemorySource string
}

// Usage reads the usage of app's cgroup. An app that has not started a
// process yet has used nothing. Without a cgroup it fails.
func (t *Tree) Usage(app string) (Usage, error) {
	if t == nil || t.dir == "" {
		return Usage{}, errors.New("no cgroup")
	}
	dir := filepath.Join(t.dir, groupName(app))
	var u Usage
	data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{MemorySource: "rss"}, nil
	}
	if err != nil {
		return Usage{}, fmt.Errorf("reading cgroup usage: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			u.CPU = time.Duration(us) * time.Microsecond
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "memory.current")); err == nil {
		u.Memory, _ = strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		u.MemorySource = "memory.current"
		return u, nil
	}
	u.MemorySource = "rss"
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range bytes.Fields(procs) {
			u.Memory += rss(string(f))
		}
		return nil
	})
	return u, nil
}

// rss is the VmRSS of process pid in bytes (0 if gone).
func rss(pid string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
