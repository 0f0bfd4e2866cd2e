package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestSIGKILLLeavesNothingBehind loads an Accel in a child process, kills
// it with SIGKILL and checks that the kernel freed its programs and maps:
// everything hangs off file descriptors, nothing is pinned.
func TestSIGKILLLeavesNothingBehind(t *testing.T) {
	requireBPF(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOOPGATE_BPF_CHILD=load")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	ids := make(chan kernelObjects, 1)
	go func() {
		k := kernelObjects{progs: map[string]ebpf.ProgramID{}, maps: map[string]ebpf.MapID{}}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var kind, name string
			var id uint32
			if n, _ := fmt.Sscanf(sc.Text(), "%s %s %d", &kind, &name, &id); n != 3 {
				continue
			}
			switch kind {
			case "prog":
				k.progs[name] = ebpf.ProgramID(id)
			case "map":
				k.maps[name] = ebpf.MapID(id)
			case "ready":
				ids <- k
				return
			}
		}
		close(ids)
	}()
	var k kernelObjects
	select {
	case got, ok := <-ids:
		if !ok {
			t.Fatal("child exited before loading")
		}
		k = got
	case <-time.After(20 * time.Second):
		t.Fatal("child did not load within 20 s")
	}
	if alive := k.alive(); len(alive) != len(k.progs)+len(k.maps) {
		t.Fatalf("child's kernel objects before the kill: %v, want all %d", alive, len(k.progs)+len(k.maps))
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !waitFor(5*time.Second, func() bool { return len(k.alive()) == 0 }) {
		t.Fatalf("kernel objects alive 5 s after SIGKILL: %v", k.alive())
	}
}

// TestMain runs the child half of TestSIGKILLLeavesNothingBehind when
// the test binary is started with LOOPGATE_BPF_CHILD=load.
func TestMain(m *testing.M) {
	switch os.Getenv("LOOPGATE_BPF_CHILD") {
	case "load":
		loadAndWait()
		return
	case "echo", "client":
		scopeChild(os.Getenv("LOOPGATE_BPF_CHILD"))
		return
	}
	os.Exit(m.Run())
}

// loadAndWait loads an Accel, prints its kernel object IDs and waits to be
// killed.
func loadAndWait() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	a, err := Load(Options{})
	if err != nil {
		fail(err)
	}
	if err := a.AddPort(1); err != nil {
		fail(err)
	}
	k, err := a.kernelIDs()
	if err != nil {
		fail(err)
	}
	for name, id := range k.progs {
		fmt.Printf("prog %s %d\n", name, id)
	}
	for name, id := range k.maps {
		fmt.Printf("map %s %d\n", name, id)
	}
	fmt.Println("ready all 0")
	time.Sleep(30 * time.Second) // the parent kills us long before
	fail(errors.New("not killed within 30 s"))
}
