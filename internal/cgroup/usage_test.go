package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// The private memory of periodicRestartPrivateMemory: memory.stat's anon
// where there is one, else the RssAnon of the processes listed.
func TestPrivateMemory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.stat"), []byte("file 999999\nanon 123456\nkernel 1\n"), 0o644)
	if n, src := privateMemory(dir); n != 123456 || src != "memory.stat anon" {
		t.Errorf("with memory.stat: %d %s", n, src)
	}

	before := PrivateRSS(os.Getpid())
	// Mapped here, not from the Go heap, whose pages an earlier run of the
	// test (-count) may have left resident.
	b, err := syscall.Mmap(-1, 0, 64<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	after := PrivateRSS(os.Getpid())
	if before <= 0 || after-before < 60<<20 {
		t.Errorf("RssAnon %d before and %d after touching 64 MiB", before, after)
	}
	// Without memory.stat: the sum over cgroup.procs, here this process.
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if n, src := privateMemory(dir); src != "RssAnon" || n < 60<<20 {
		t.Errorf("from cgroup.procs: %d %s", n, src)
	}
}

// TestV1Memory: the memory use and OOM kill count of a cgroup v1 mirror
// come from memory.usage_in_bytes and memory.oom_control's oom_kill.
func TestV1Memory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.usage_in_bytes"), []byte("33497088\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644)
	if usage, kills, ok := v1Memory(dir); !ok || usage != 33497088 || kills != 2 {
		t.Errorf("v1Memory = %d, %d, %v; want 33497088, 2, true", usage, kills, ok)
	}
	if _, _, ok := v1Memory(t.TempDir()); ok {
		t.Error("v1Memory of a directory without memory files: ok")
	}
}
