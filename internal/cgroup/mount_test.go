package cgroup

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMount(t *testing.T) {
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
		got, err := parseMount(strings.NewReader(tc.mountinfo))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseMount(strings.NewReader(v1only)); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("cgroup v1 only: %v, want ErrNoCgroup2", err)
	}
}

func TestParseSelf(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0::/\n", "/", true},
		{"12:memory:/x\n0::/system.slice/loopgate.service\n", "/system.slice/loopgate.service", true},
		{"0::/../../other\n", "", false},
		{"4:memory:/x\n", "", false},
	} {
		got, err := parseSelf(strings.NewReader(tc.in))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("%q: got %q, %v", tc.in, got, err)
		}
	}
}
