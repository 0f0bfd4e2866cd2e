package supervisor

import (
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/loopgate/loopgate/internal/cgroup"
)

// The spawner goroutine forks every backend from one OS thread that it has
// locked and never unlocks. Pdeathsig fires when the thread that forked the
// child exits, not when the process does; a goroutine that unlocks (or any
// goroutine Go happens to run on a thread that later exits) would kill
// backends at random. A locked goroutine that never returns keeps its thread
// for the life of the process, so Pdeathsig fires exactly when loopgate dies.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd   *exec.Cmd
	group *cgroup.Group // nil without containment
	reply chan error
}

func spawner() {
	lockOffMainThread(serveSpawns)
}

// lockOffMainThread runs f on a goroutine locked to a thread other than
// the process's main thread. The main thread leads the thread group: in a
// cgroup v1 memory cgroup (an app's mirror, which the spawner thread enters
// for a fork: startIn) the leader takes the whole process's memory
// charges, being the owner of its memory, and is what the cgroup's OOM
// killer may choose; another thread does neither. A goroutine locked to
// the main thread starts f on another goroutine, which cannot get the main
// thread while this one holds it, and lets the main thread go once that
// one has locked its own.
func lockOffMainThread(f func()) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		f()
		return
	}
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(locked)
		f()
	}()
	<-locked
	runtime.UnlockOSThread()
}

// serveSpawns starts what is asked on its locked thread; it never returns
// (see above).
func serveSpawns() {
	// Ambient capabilities survive execve, so loopgate's own (systemd's
	// AmbientCapabilities= for :80 or the eBPF sockmap) would pass to
	// every backend. They are per thread: clearing them here, on the
	// thread every backend is forked from, leaves loopgate's other threads
	// theirs. The error is ignored: a kernel without ambient capabilities
	// (before 4.3) answers EINVAL and has none to pass on.
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	for r := range spawnReqs {
		r.reply <- startIn(r.cmd, r.group)
	}
}

// startIn starts cmd with this thread in g's cgroup v1 cgroups, where its
// limits are on cgroup v1 (cgroup.Group.EnterThread: the thread is locked).
// The Go runtime creates no thread from a locked one (the template thread
// does), so no thread of loopgate's lands there.
func startIn(cmd *exec.Cmd, g *cgroup.Group) error {
	leave, err := g.EnterThread()
	if err != nil {
		return err
	}
	err = cmd.Start()
	if lerr := leave(); lerr != nil {
		// Every later backend would start in this app's cgroups.
		if err == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return lerr
	}
	return err
}

func startOnSpawnerThread(cmd *exec.Cmd, g *cgroup.Group) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go spawner()
	})
	reply := make(chan error, 1)
	spawnReqs <- spawnReq{cmd: cmd, group: g, reply: reply}
	return <-reply
}
