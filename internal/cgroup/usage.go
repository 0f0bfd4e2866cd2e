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
	// memory controller is enabled for loopgate's cgroups, the same from
	// memory.usage_in_bytes of the app's cgroup v1 mirror where its
	// memoryLimit is on cgroup v1, otherwise the sum of the resident set
	// sizes (VmRSS) of the app's live processes, which counts shared pages
	// once per process.
	Memory int64
	// MemorySource says which: "memory.current", "memory.usage_in_bytes"
	// or "rss".
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
	u.Memory, u.MemorySource = memory(dir)
	if v1 := t.v1Dir("memory", app); u.MemorySource == "rss" && v1 != "" {
		if n, _, ok := v1Memory(v1); ok {
			u.Memory, u.MemorySource = n, "memory.usage_in_bytes"
		}
	}
	return u, nil
}

// PrivateMemory reads the private memory of the group's processes now, in
// bytes, for periodicRestartPrivateMemory: the anon line of memory.stat
// (anonymous memory: heaps, stacks, written private mappings; not the page
// cache, which a process reading files fills and the kernel reclaims)
// where the memory controller is enabled, else the sum of their RssAnon.
// source says which ("memory.stat anon" or "RssAnon"). Without a cgroup it
// fails.
func (g *Group) PrivateMemory() (bytes int64, source string, err error) {
	if g == nil || g.dir == "" {
		return 0, "", errors.New("no cgroup")
	}
	bytes, source = privateMemory(g.dir)
	return bytes, source, nil
}

// privateMemory reads the anonymous memory of the cgroup dir and
// everything below it.
func privateMemory(dir string) (int64, string) {
	if b, err := os.ReadFile(filepath.Join(dir, "memory.stat")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "anon "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n, "memory.stat anon"
			}
		}
	}
	var total int64
	eachProc(dir, func(pid string) { total += statusBytes(pid, "RssAnon:") })
	return total, "RssAnon"
}

// memory reads the memory use of the cgroup dir and everything below it.
func memory(dir string) (int64, string) {
	if b, err := os.ReadFile(filepath.Join(dir, "memory.current")); err == nil {
		n, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		return n, "memory.current"
	}
	var total int64
	eachProc(dir, func(pid string) { total += rss(pid) })
	return total, "rss"
}

// eachProc calls f with the PID of every process in the cgroup dir and
// below it (cgroup v2 or v1).
func eachProc(dir string, f func(pid string)) {
	for _, d := range cgroupDirs(dir) {
		procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, pid := range bytes.Fields(procs) {
			f(string(pid))
		}
	}
}

// cgroupDirs lists the cgroup dir and every cgroup below it, each before
// its children: removing them is done from the end.
func cgroupDirs(dir string) []string {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs
}

// PrivateRSS is the RssAnon of process pid in bytes (0 if it is gone or
// cannot be read): the private memory reading for processes without a
// cgroup.
func PrivateRSS(pid int) int64 { return statusBytes(strconv.Itoa(pid), "RssAnon:") }

// rss is the VmRSS of process pid in bytes (0 if gone).
func rss(pid string) int64 { return statusBytes(pid, "VmRSS:") }

// statusBytes reads the kB field (such as "VmRSS:") of /proc/pid/status in
// bytes; 0 if the process is gone or has no such field.
func statusBytes(pid, field string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
