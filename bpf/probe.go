package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"

	"github.com/loopgate/loopgate/internal/cgroup"
)

// ErrNotSupported means this host or process cannot run the sockmap fast
// path; the caller should fall back to plain loopback TCP. Errors wrapping
// it say why (privileges, cgroup v2, kernel features).
var ErrNotSupported = errors.New("sockmap acceleration not supported")

// ErrClosed is returned by the methods of an Accel after Close.
var ErrClosed = errors.New("sockmap accelerator closed")

// Capability bits (linux/capability.h) that loading and attaching need:
// CAP_BPF to load programs and create maps, CAP_PERFMON to read the peer
// socket's queue length (a kernel address kept in a map, read with
// bpf_probe_read_kernel), CAP_NET_ADMIN for sockops/sk_msg and cgroup
// attachment. CAP_SYS_ADMIN stands in for the first two.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Probe reports whether Load can work here: it returns nil, an error
// wrapping ErrNotSupported that names the missing piece, or another error
// when the check itself failed (which says nothing about support). It
// loads nothing and leaves nothing behind; it is safe for concurrent use.
func Probe() error {
	if err := probeCaps("/proc/self/status"); err != nil {
		return err
	}
	if _, err := CgroupV2Mount(); err != nil {
		return err
	}
	for _, mt := range []ebpf.MapType{ebpf.SockHash, ebpf.Hash, ebpf.LRUHash, ebpf.PerCPUArray, ebpf.SkStorage} {
		if err := features.HaveMapType(mt); err != nil {
			return notSupported(fmt.Sprintf("map type %s", mt), err)
		}
	}
	helpers := []struct {
		pt ebpf.ProgramType
		fn asm.BuiltinFunc
	}{
		{ebpf.SockOps, asm.FnSockHashUpdate},
		{ebpf.SockOps, asm.FnGetNetnsCookie},
		{ebpf.SockOps, asm.FnSockOpsCbFlagsSet},
		{ebpf.SkMsg, asm.FnMsgRedirectHash},
		{ebpf.SkMsg, asm.FnSkStorageGet},
		{ebpf.SkMsg, asm.FnProbeReadKernel}, // absent under kernel lockdown
	}
	for _, h := range helpers {
		if err := features.HaveProgramType(h.pt); err != nil {
			return notSupported(fmt.Sprintf("program type %s", h.pt), err)
		}
		if err := features.HaveProgramHelper(h.pt, h.fn); err != nil {
			return notSupported(fmt.Sprintf("helper %s in %s programs", h.fn, h.pt), err)
		}
	}
	return nil
}

// notSupported turns a conclusive "no" from the features package into our
// sentinel and passes any other failure through unchanged.
func notSupported(what string, err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %s: %v", ErrNotSupported, what, err)
	}
	return fmt.Errorf("probing %s: %w", what, err)
}

// probeCaps checks the effective capability set in a /proc/<pid>/status
// file.
func probeCaps(statusPath string) error {
	f, err := os.Open(statusPath)
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	defer f.Close()
	capEff, err := parseCapEff(f)
	if err != nil {
		return fmt.Errorf("reading capabilities from %s: %w", statusPath, err)
	}
	has := func(c uint) bool { return capEff&(1<<c) != 0 }
	if !has(capSysAdmin) && !(has(capBPF) && has(capPerfmon)) {
		return fmt.Errorf("%w: process lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root or grant them", ErrNotSupported)
	}
	if !has(capNetAdmin) {
		return fmt.Errorf("%w: process lacks CAP_NET_ADMIN", ErrNotSupported)
	}
	return nil
}

func parseCapEff(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		capEff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("bad CapEff line %q: %w", sc.Text(), err)
		}
		return capEff, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line")
}

// CgroupV2Mount returns the mount point of the cgroup v2 hierarchy (see
// internal/cgroup.Mount). Without a cgroup v2 mount the error wraps
// ErrNotSupported.
func CgroupV2Mount() (string, error) {
	mnt, err := cgroup.Mount()
	if errors.Is(err, cgroup.ErrNoCgroup2) {
		return "", fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return mnt, err
}

// OwnCgroup returns the directory of this process's own cgroup v2 (the
// mount point joined with the "0::" line of /proc/self/cgroup): the
// narrowest cgroup that holds loopgate and, below it, its backends, so the
// one to attach to when only loopgate's own connections should qualify.
// Under systemd it is the service's cgroup; in a container, the
// container's. It fails when there is no cgroup v2 mount, when the cgroup
// lies outside this process's cgroup namespace, or when the directory is
// not there (a cgroup namespace whose root is not the mount's).
func OwnCgroup() (string, error) {
	mnt, err := CgroupV2Mount()
	if err != nil {
		return "", err
	}
	self, err := cgroup.Self()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(mnt, self)
	if fi, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("finding own cgroup: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("finding own cgroup: %s is not a directory", dir)
	}
	return dir, nil
}
