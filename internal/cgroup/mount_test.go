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

func TestParseV1Homes(t *testing.T) {
	mountinfo := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	cgroup := `9:name=systemd:/
8:pids:/docker/abc
4:memory:/process_api/2d1a
2:cpu,cpuacct:/
0::/
`
	got := parseV1Homes(strings.NewReader(mountinfo), strings.NewReader(cgroup))
	want := map[string]string{"memory": "/sys/fs/cgroup/memory/process_api/2d1a", "cpu": "/sys/fs/cgroup/cpu,cpuacct"}
	if len(got) != len(want) || got["memory"] != want["memory"] || got["cpu"] != want["cpu"] {
		t.Errorf("parseV1Homes = %v, want %v", got, want)
	}
	if got := parseV1Homes(strings.NewReader("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), strings.NewReader("0::/\n")); len(got) != 0 {
		t.Errorf("a cgroup v2 host: %v", got)
	}
}
