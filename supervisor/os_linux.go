package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/loopgate/loopgate/internal/cgroup"
)

// groupRemoveWait bounds how long Wait waits for a dead backend's cgroup to
// empty after cgroup.kill.
const groupRemoveWait = 2 * time.Second

// realOS is the Linux implementation of OS. With a tree, each backend
// process gets a cgroup of its own (Options.Contain).
type realOS struct {
	tree *cgroup.Tree
}

var _ OS = realOS{}

func (o realOS) Spawn(c *Cmd) (Proc, error) {
	cmd := &exec.Cmd{
		Path: c.Path,
		Args: append([]string{c.Path}, c.Args...),
		Env:  c.Env,
		Dir:  c.Dir,
		// Stdin nil: /dev/null.
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
			// The child sets its groups, gid and uid before its working
			// directory and Pdeathsig (which a credential change would
			// clear), so both hold for the new identity.
			Credential: c.Cred,
		},
	}
	p := &realProc{}
	if o.tree != nil || c.MemoryLimit > 0 || c.CPULimit > 0 {
		if err := o.tree.SetLimits(c.App, cgroup.Limits{MemoryMax: c.MemoryLimit, CPUPercent: c.CPULimit}); err != nil {
			return nil, err
		}
	}
	if o.tree != nil {
		g, err := o.tree.NewGroup(c.App)
		if err != nil {
			return nil, err
		}
		if fd := g.FD(); fd >= 0 {
			// clone3(CLONE_INTO_CGROUP): the process starts in its cgroup,
			// so nothing it forks can be outside it.
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		}
		p.group = g
	}
	var outW, errW *os.File
	if c.Output {
		var err error
		if p.stdout, outW, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("stdout pipe: %w", err)
		}
		if p.stderr, errW, err = os.Pipe(); err != nil {
			p.stdout.Close()
			outW.Close()
			return nil, fmt.Errorf("stderr pipe: %w", err)
		}
		cmd.Stdout, cmd.Stderr = outW, errW
	}
	err := startOnSpawnerThread(cmd, p.group)
	if c.Output {
		// The child has its copies; ours would keep the pipes open forever.
		outW.Close()
		errW.Close()
	}
	if err != nil {
		if c.Output {
			p.stdout.Close()
			p.stderr.Close()
		}
		if p.group != nil {
			p.group.Remove(0)
		}
		if c.Cred != nil && errors.Is(err, syscall.EACCES) {
			err = fmt.Errorf("%w (as uid %d gid %d: may that user enter %s and run %s?)", err, c.Cred.Uid, c.Cred.Gid, c.Dir, c.Path)
		}
		return nil, err
	}
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	if p.group != nil {
		p.group.Started(p.pid)
	}
	return p, nil
}

type realProc struct {
	cmd            *exec.Cmd
	pid            int
	stdout, stderr *os.File
	group          *cgroup.Group // nil without Options.Contain

	mu     sync.Mutex // orders Signal against reaping
	reaped bool
}

func (p *realProc) PID() int { return p.pid }

func (p *realProc) Stdout() io.ReadCloser {
	if p.stdout == nil {
		return nil
	}
	return p.stdout
}

func (p *realProc) Stderr() io.ReadCloser {
	if p.stderr == nil {
		return nil
	}
	return p.stderr
}

func (p *realProc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	// The group id is the leader's pid (Setpgid). Until the leader is reaped
	// its pid, and so the group id, cannot be reused.
	err := unix.Kill(-p.pid, sig)
	if sig == syscall.SIGKILL && p.group != nil {
		// Also what left the process group (setsid, setpgid).
		if kerr := p.group.Kill(); err == nil {
			err = kerr
		}
	}
	return err
}

func (p *realProc) Wait() string {
	// Wait for the exit without reaping, so the group id stays reserved
	// while the rest of the group is killed: children of a dead backend must
	// not linger (the reference puts them in a job object).
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	unix.Kill(-p.pid, unix.SIGKILL)
	if p.group != nil {
		p.group.Kill()
	}
	p.reaped = true
	p.mu.Unlock()
	p.cmd.Wait()
	if p.group != nil {
		// Bounded: what does not die leaves a cgroup behind for the
		// supervisor's final cleanup (or the keeper) to remove.
		p.group.Remove(groupRemoveWait)
	}
	if p.cmd.ProcessState == nil {
		return "unknown exit status"
	}
	return p.cmd.ProcessState.String()
}

func (realOS) PortFree(port int) bool {
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (realOS) Probe(port int, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), timeout)
	if err != nil {
		return localShortage(err)
	}
	c.Close()
	return true
}

// localShortage reports whether a connect failed for want of loopgate's own
// file descriptors or kernel memory. Such a probe says nothing about the
// backend, and killing a healthy backend would only add a failed restart.
func localShortage(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

func (realOS) SendShutdown(url, token string, timeout time.Duration) (int, error) {
	return sendShutdown(&http.Transport{DisableKeepAlives: true, Proxy: nil}, url, token, timeout)
}

// noRedirect makes an http.Client return a redirect as the answer instead
// of following it: the shutdown request and the pings carry the pairing
// token, which must reach the backend only.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// sendShutdown sends the shutdown request with t, on a connection of its
// own that is closed after it. A redirect is its answer (not 202: SIGTERM
// follows), never followed.
func sendShutdown(t *http.Transport, url, token string, timeout time.Duration) (int, error) {
	defer t.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header["MS-ASPNETCORE-EVENT"] = []string{"shutdown"}
	req.Header["MS-ASPNETCORE-TOKEN"] = []string{token}
	req.Header["User-Agent"] = []string{""} // the reference sends none
	client := http.Client{Timeout: timeout, Transport: t, CheckRedirect: noRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (realOS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

func (realOS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (realOS) Watch(dir string) (Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(dir); err != nil {
		fw.Close()
		return nil, err
	}
	w := &realWatcher{fw: fw, events: make(chan string, 16), done: make(chan struct{})}
	go w.run()
	return w, nil
}

type realWatcher struct {
	fw     *fsnotify.Watcher
	events chan string
	done   chan struct{}
	once   sync.Once
}

func (w *realWatcher) run() {
	defer close(w.events)
	for {
		var name string
		select {
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			name = filepath.Base(ev.Name)
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				continue
			}
			name = "" // lost events: re-check everything
		case <-w.done:
			return
		}
		select {
		case w.events <- name:
		case <-w.done:
			return
		}
	}
}

func (w *realWatcher) Events() <-chan string { return w.events }

func (w *realWatcher) Close() error {
	w.once.Do(func() { close(w.done) })
	return w.fw.Close()
}

// h2Preface is what ProbeH2C sends: the client connection preface, an
// empty SETTINGS frame and a PING with an 8-byte payload of its own.
var h2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
	0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS
	0, 0, 8, 6, 0, 0, 0, 0, 0, 'l', 'o', 'o', 'p', 'g', 'a', 't', 'e') // PING

// h2Bye acknowledges the app's SETTINGS and says GOAWAY (NO_ERROR, no
// stream), so the app takes the probe's close for a clean one.
var h2Bye = []byte{0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func (realOS) ProbeH2C(port int, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), timeout)
	if err != nil {
		if localShortage(err) {
			return nil
		}
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(h2Preface); err != nil {
		return err
	}
	return readH2Answer(c)
}

// readH2Answer reads the app's side of ProbeH2C: a SETTINGS frame first
// (RFC 9113 §3.4), then frames up to the ACK of the probe's PING.
func readH2Answer(c net.Conn) error {
	var hdr [9]byte
	payload := make([]byte, 1<<14)
	for first := true; ; first = false {
		n, err := io.ReadFull(c, hdr[:])
		if err != nil {
			if first && n > 0 {
				return fmt.Errorf("%w: it answered %q", ErrNotHTTP2, hdr[:n])
			}
			return err
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		if first && (typ != 4 || flags&1 != 0 || length%6 != 0 || length > len(payload)) {
			rest := make([]byte, 32)
			m, _ := c.Read(rest)
			return fmt.Errorf("%w: it answered %q", ErrNotHTTP2, append(hdr[:], rest[:m]...))
		}
		if length > len(payload) {
			return fmt.Errorf("%w: a frame of %d bytes", ErrNotHTTP2, length)
		}
		if _, err := io.ReadFull(c, payload[:length]); err != nil {
			return err
		}
		switch {
		case typ == 6 && flags&1 != 0 && string(payload[:length]) == "loopgate":
			_, _ = c.Write(h2Bye)
			return nil
		case typ == 7:
			return errors.New("the app sent GOAWAY")
		}
	}
}

func (realOS) SendShutdownH2C(url, token string, timeout time.Duration) (int, error) {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	return sendShutdown(&http.Transport{Protocols: &protos, Proxy: nil}, url, token, timeout)
}
