package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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
		if err := removeAll(dir, 5*time.Second); err != nil {
			return 1
		}
	}
	return 0
}

// keeper is loopgate's side of the keeper: the write end of its pipe.
type keeper struct {
	mu   sync.Mutex
	w    *os.File // nil once closed
	proc *os.Process
	done chan struct{} // closed when the keeper has exited and been reaped
}

// startKeeper starts exe as the keeper of dir and waits for it to say it
// runs.
func startKeeper(exe, dir string) (*keeper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	sr, sw, err := os.Pipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("keeper: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{"loopgate-keeper"}
	cmd.Env = append(os.Environ(), keeperEnv+"="+dir)
	cmd.Stdin = r
	cmd.ExtraFiles = []*os.File{sw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	sw.Close()
	if err != nil {
		w.Close()
		sr.Close()
		return nil, fmt.Errorf("keeper: %w", err)
	}
	k := &keeper{w: w, proc: cmd.Process, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(k.done)
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
			return k, nil
		}
	case <-t.C:
	}
	// Not a keeper: a program that does not call KeeperMain.
	k.proc.Kill()
	w.Close()
	sr.Close()
	return nil, errors.New("keeper: " + exe + " did not start as a keeper (does its main call cgroup.KeeperMain?)")
}

// send tells the keeper to kill (+) or forget (-) a process group.
func (k *keeper) send(op byte, pgid int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.w != nil {
		k.w.WriteString(string(op) + strconv.Itoa(pgid) + "\n")
	}
}

// close closes the pipe and waits, bounded, for the keeper to exit.
func (k *keeper) close() {
	k.mu.Lock()
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
		k.proc.Kill()
	}
}
