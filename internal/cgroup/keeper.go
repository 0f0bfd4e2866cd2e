package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The keeper is what enforces containment after loopgate is SIGKILLed,
// when nothing of loopgate's runs any more to write cgroup.kill. It is this
// executable started again, in a session of its own (so a signal to
// loopgate's process group or terminal does not reach it), ignoring the
// signals an operator sends to stop loopgate, with stdin the read end of a
// pipe whose only write end loopgate holds. loopgate dying, however it
// dies, closes that end: the keeper reads EOF, kills loopgate's cgroup
// (every backend and everything they started) or, without a cgroup, the
// process groups loopgate told it about, removes the cgroup and exits.
// After a clean stop loopgate has done all that itself and the keeper finds
// nothing left.
//
// It is not kernel-enforced: a keeper killed together with loopgate (kill
// -9 -1, an OOM kill of both) cannot act. README's "Process-tree
// containment" says what holds in each setting.

// keeperEnv carries loopgate's cgroup path ("" for none) to the keeper.
const keeperEnv = "LOOPGATE_CGROUP_KEEPER"

// keeperStartTimeout bounds how long Open waits for the keeper to say it
// is running.
const keeperStartTimeout = 5 * time.Second

// KeeperMain runs the keeper and exits when this process was started as
// one; otherwise it returns at once. A program that uses Open must call it
// first thing in main (and a test binary in TestMain).
func KeeperMain() {
	dir, ok := os.LookupEnv(keeperEnv)
	if !ok {
		return
	}
	os.Exit(runKeeper(dir, os.Stdin, os.NewFile(3, "keeper-status")))
}

func runKeeper(dir string, in, status *os.File) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE, syscall.SIGUSR1)
	// Its name in ps, top and killall: started through /proc/self/exe, it
	// would be "exe" (and not "loopgate", so `killall -9 loopgate` leaves it
	// to clean up).
	_ = os.WriteFile("/proc/self/comm", []byte("loopgate-keeper"), 0)
	// Out of the OOM killer's way where allowed: it holds almost nothing.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	if status != nil {
		status.WriteString("ok\n")
		status.Close()
	}
	pgids := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			pgids[pgid] = true
		case '-':
			delete(pgids, pgid)
		}
	}
	// EOF (or a read error): loopgate is gone or has finished with us.
	for pgid := range pgids {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if dir != "" {
		code := 0
		if err := removeAll(dir, 5*time.Second); err != nil {
			code = 1
		}
		// The keeper is in loopgate's cgroup v1 cgroups, so it finds the
		// same mirrors.
		for _, root := range v1Roots(v1Homes(), filepath.Base(dir)) {
			if err := removeV1(root, 5*time.Second); err != nil {
				code = 1
			}
		}
		return code
	}
	return 0
}

// keeper is loopgate's side of the keeper: the write end of its pipe, and
// a goroutine that starts a new keeper if the one running exits while
// loopgate still runs (killed by an operator, say), telling it again about
// the process groups the old one knew.
type keeper struct {
	exe, dir string
	lock     *os.File        // the tree's lock, passed on to each keeper (lock.go)
	lost     func(err error) // Options.KeeperLost

	mu      sync.Mutex
	w       *os.File // nil while no keeper runs, and once closed
	proc    *os.Process
	pgids   map[int]bool // what the keeper has been told to kill
	closing bool
	done    chan struct{} // closed when watch has returned
}

// startKeeper starts exe as the keeper of dir, holding lock with
// loopgate, and waits for it to say it runs.
func startKeeper(exe, dir string, lock *os.File, lost func(error)) (*keeper, error) {
	w, proc, exited, err := spawnKeeper(exe, dir, lock)
	if err != nil {
		return nil, err
	}
	k := &keeper{exe: exe, dir: dir, lock: lock, lost: lost, w: w, proc: proc, pgids: map[int]bool{}, done: make(chan struct{})}
	go k.watch(exited)
	return k, nil
}

// watch replaces a keeper that exits before close, retrying with a growing
// pause (100 ms to 5 s) while none can be started.
func (k *keeper) watch(exited <-chan struct{}) {
	defer close(k.done)
	pause := 100 * time.Millisecond
	for {
		<-exited
		k.mu.Lock()
		if k.closing {
			k.mu.Unlock()
			return
		}
		if k.w != nil {
			k.w.Close()
			k.w = nil
		}
		k.mu.Unlock()
		time.Sleep(pause)
		w, proc, ex, err := spawnKeeper(k.exe, k.dir, k.lock)
		k.mu.Lock()
		if k.closing {
			k.mu.Unlock()
			if err == nil {
				w.Close()
				<-ex
			}
			return
		}
		if err != nil {
			k.mu.Unlock()
			if k.lost != nil {
				k.lost(err)
			}
			pause = min(2*pause, 5*time.Second)
			c := make(chan struct{})
			close(c)
			exited = c
			continue
		}
		k.w, k.proc, exited, pause = w, proc, ex, 100*time.Millisecond
		for pgid := range k.pgids {
			k.w.WriteString("+" + strconv.Itoa(pgid) + "\n")
		}
		k.mu.Unlock()
		if k.lost != nil {
			k.lost(nil)
		}
	}
}

// spawnKeeper starts one keeper process, which inherits lock (if not nil)
// as descriptor 4 and holds it until it exits, and waits (bounded) for it
// to say it runs. exited is closed when it has exited and been reaped.
func spawnKeeper(exe, dir string, lock *os.File) (w *os.File, proc *os.Process, exited <-chan struct{}, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("keeper: %w", err)
	}
	sr, sw, err := os.Pipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, nil, fmt.Errorf("keeper: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{"loopgate-keeper"}
	cmd.Env = append(os.Environ(), keeperEnv+"="+dir)
	cmd.Stdin = r
	cmd.ExtraFiles = []*os.File{sw}
	if lock != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, lock)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	sw.Close()
	if err != nil {
		w.Close()
		sr.Close()
		return nil, nil, nil, fmt.Errorf("keeper: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	ok := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(sr).ReadString('\n')
		sr.Close()
		ok <- line == "ok\n"
	}()
	t := time.NewTimer(keeperStartTimeout)
	defer t.Stop()
	select {
	case good := <-ok:
		if good {
			return w, cmd.Process, done, nil
		}
	case <-t.C:
	}
	// Not a keeper: a program that does not call KeeperMain.
	cmd.Process.Kill()
	w.Close()
	sr.Close()
	<-done
	return nil, nil, nil, errors.New("keeper: " + exe + " did not start as a keeper (does its main call cgroup.KeeperMain?)")
}

// send tells the keeper to kill (+) or forget (-) a process group.
func (k *keeper) send(op byte, pgid int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if op == '+' {
		k.pgids[pgid] = true
	} else {
		delete(k.pgids, pgid)
	}
	if k.w != nil {
		k.w.WriteString(string(op) + strconv.Itoa(pgid) + "\n")
	}
}

// close closes the pipe and waits, bounded, for the keeper to exit.
func (k *keeper) close() {
	k.mu.Lock()
	k.closing = true
	if k.w != nil {
		k.w.Close()
		k.w = nil
	}
	k.mu.Unlock()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-k.done:
	case <-t.C:
		k.mu.Lock()
		k.proc.Kill()
		k.mu.Unlock()
	}
}
