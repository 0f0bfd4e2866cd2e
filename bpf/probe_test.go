package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

// TestOwnCgroup: the directory of this process's cgroup below the mount,
// which is where serve attaches.
func TestOwnCgroup(t *testing.T) {
	mnt, err := CgroupV2Mount()
	if err != nil {
		t.Skip(err)
	}
	dir, err := OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	rel, ok := "", false
	for _, l := range strings.Split(string(b), "\n") {
		if r, found := strings.CutPrefix(l, "0::"); found {
			rel, ok = r, true
		}
	}
	if !ok || dir != filepath.Join(mnt, rel) {
		t.Fatalf("OwnCgroup() = %q; mount %q, /proc/self/cgroup %q", dir, mnt, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
}
