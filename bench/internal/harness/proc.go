package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// per second on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// CPUTime returns the user plus system CPU time the process pid has used
// (utime+stime from /proc/PID/stat, all its threads, 10 ms resolution).
func CPUTime(pid int) (time.Duration, error) {
	c, err := CPUTimes(pid)
	return c.User + c.System, err
}

// CPU is a process's CPU time in user space and in the kernel.
type CPU struct{ User, System time.Duration }

// Total is User plus System.
func (c CPU) Total() time.Duration { return c.User + c.System }

// Sub returns c minus d.
func (c CPU) Sub(d CPU) CPU { return CPU{c.User - d.User, c.System - d.System} }

// CPUTimes returns the user and system CPU time the process pid has used
// (utime and stime from /proc/PID/stat, all its threads, 10 ms resolution).
func CPUTimes(pid int) (CPU, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return CPU{}, fmt.Errorf("reading CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPU{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return CPU{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return CPU{}, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return CPU{time.Duration(ut) * clockTick, time.Duration(st) * clockTick}, nil
}

// TotalCPU sums CPUTime over pids.
func TotalCPU(pids ...int) (time.Duration, error) {
	c, err := SumCPUTimes(pids...)
	return c.Total(), err
}

// SumCPUTimes sums CPUTimes over pids.
func SumCPUTimes(pids ...int) (CPU, error) {
	var sum CPU
	for _, p := range pids {
		c, err := CPUTimes(p)
		if err != nil {
			return CPU{}, err
		}
		sum.User += c.User
		sum.System += c.System
	}
	return sum, nil
}

// Children returns the PIDs whose parent is pid.
func Children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		var out []int
		for _, f := range bytes.Fields(b) {
			if n, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	// Kernels without CONFIG_PROC_CHILDREN: scan /proc.
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		st, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(st, ')')
		if f := bytes.Fields(st[i+1:]); i > 0 && len(f) > 1 && string(f[1]) == strconv.Itoa(pid) {
			if n, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// CanPin reports whether this machine has the two CPUs the benchmarks pin
// to: 0 for the server side, 1 for the load generator.
func CanPin() bool {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return false
	}
	return set.IsSet(0) && set.IsSet(1)
}

// StartPinned starts cmd with its CPU affinity set to cpu (cpu < 0: no
// pinning). The child inherits the affinity of the thread that forks it,
// so the calling goroutine's thread is pinned around the fork and restored
// after; a Go child then sizes GOMAXPROCS to 1.
func StartPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("reading CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = fmt.Errorf("restoring CPU affinity: %w", rerr)
	}
	return err
}

// PinSelf moves every thread of this process to cpu and returns a function
// that restores the previous affinity. Threads the runtime starts later
// inherit it from the thread that creates them.
func PinSelf(cpu int) (restore func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("reading CPU affinity: %w", err)
	}
	set.Set(cpu)
	apply := func(s *unix.CPUSet) error {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tids {
			tid, _ := strconv.Atoi(t.Name())
			if err := unix.SchedSetaffinity(tid, s); err != nil && err != unix.ESRCH {
				return fmt.Errorf("setting affinity of thread %d: %w", tid, err)
			}
		}
		return nil
	}
	if err := apply(&set); err != nil {
		return nil, err
	}
	return func() { _ = apply(&old) }, nil
}
