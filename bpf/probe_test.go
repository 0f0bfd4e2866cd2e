package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCgroupV2Mount(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	escaped := `50 1 0:40 / /mnt/cgroup\040v2 rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	v1only := `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`
	for _, tc := range []struct {
		name, mountinfo, want string
	}{
		{"hybrid", hybrid, "/sys/fs/cgroup/unified"},
		{"escaped path and optional fields", escaped, "/mnt/cgroup v2"},
	} {
		got, err := parseCgroupV2Mount(strings.NewReader(tc.mountinfo))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseCgroupV2Mount(strings.NewReader(v1only)); !errors.Is(err, ErrNotSupported) {
		t.Errorf("cgroup v1 only: %v, want ErrNotSupported", err)
	}
}

func TestProbeCaps(t *testing.T) {
	for _, tc := range []struct {
		capEff string
		ok     bool
	}{
		{"000001ffffffffff", true},  // root
		{"000000c000001000", true},  // CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN
		{"0000000000201000", true},  // CAP_SYS_ADMIN + CAP_NET_ADMIN (pre-5.8 kernels)
		{"0000008000001000", false}, // CAP_BPF + CAP_NET_ADMIN without CAP_PERFMON
		{"000000c000000000", false},
		{"0000000000001000", false},
		{"0000000000000000", false},
	} {
		status := filepath.Join(t.TempDir(), "status")
		os.WriteFile(status, []byte("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t"+tc.capEff+"\nCapBnd:\t000001ffffffffff\n"), 0o644)
		err := probeCaps(status)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrNotSupported) {
			t.Errorf("CapEff %s: %v", tc.capEff, err)
		}
	}
	if err := probeCaps(filepath.Join(t.TempDir(), "none")); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("unreadable status: %v, want an error that is not ErrNotSupported", err)
	}
}

// TestProbeAgreesWithLoad: when Probe says yes, Load works.
func TestProbeAgreesWithLoad(t *testing.T) {
	loadAccel(t, Options{})
}
