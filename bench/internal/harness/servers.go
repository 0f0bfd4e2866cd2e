package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/status"
)

// Binaries are the programs the benchmarks run.
type Binaries struct {
	Loopgate string // cmd/loopgate
	Backend  string // bench/internal/backend
}

// Build compiles loopgate and the benchmark backend into dir.
func Build(dir string) (Binaries, error) {
	b := Binaries{Loopgate: filepath.Join(dir, "loopgate"), Backend: filepath.Join(dir, "backend")}
	for _, p := range []struct{ out, pkg string }{{b.Loopgate, "github.com/loopgate/loopgate/cmd/loopgate"}, {b.Backend, "github.com/loopgate/loopgate/bench/internal/backend"}} {
		if err := gobuild.Build(p.out, p.pkg); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// FreePort returns a loopback TCP port the kernel just picked and released.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening polls until something accepts connections at addr.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening at %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proc is a started server process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Addr string // where it serves HTTP
	log  *tail
	done chan struct{}
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Log returns the end of what the process wrote to stdout and stderr.
func (p *Proc) Log() string { return p.log.String() }

// Stop sends SIGTERM and waits up to 15 s before SIGKILL; it waits for the
// process to be reaped either way. Backends loopgate started are its to
// stop.
func (p *Proc) Stop() {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

func start(name string, cmd *exec.Cmd, cpu int) (*Proc, error) {
	p := &Proc{Name: name, Cmd: cmd, log: &tail{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := StartPinned(cmd, cpu); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// StartBackend starts the benchmark backend on a free port with
// -pairing=mode; token, when not empty, is its ASPNETCORE_TOKEN.
func StartBackend(bin, mode, token string, cpu int) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-pairing="+mode)
	cmd.Env = append(os.Environ(), "ASPNETCORE_PORT="+strconv.Itoa(port))
	if token != "" {
		cmd.Env = append(cmd.Env, "ASPNETCORE_TOKEN="+token)
	}
	p, err := start("backend", cmd, cpu)
	if err != nil {
		return nil, err
	}
	p.Addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := p.waitListening(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) waitListening() error {
	if err := WaitListening(p.Addr, 10*time.Second); err != nil {
		p.Stop()
		return fmt.Errorf("%s: %w\n%s", p.Name, err, p.Log())
	}
	return nil
}

// Loopgate is a running `loopgate serve` hosting one benchmark backend.
type Loopgate struct {
	*Proc
	Admin   string // the admin endpoint address
	TLSAddr string // the first --tls-listen listener, if extra asked for one
}

// WriteApp writes a web.config into dir (created if missing) that hosts
// backend with arguments args, with no request body limit to speak of
// (the large uploads of the comparison).
func WriteApp(dir, backend, args string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath="` + backend + `" arguments="` + args + `" stdoutLogEnabled="false" hostingModel="outofprocess" />
    <security><requestFiltering><requestLimits maxAllowedContentLength="4294967295" /></requestFiltering></security>
  </system.webServer>
</configuration>
`
	return os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644)
}

// StartLoopgate runs `loopgate serve --accel accel --access-log=false` on
// kernel-picked loopback ports for the app in appDir, with the extra
// arguments (e.g. --tls-listen 127.0.0.1:0 --tls-cert ...), and returns
// once its listeners are bound. loopgate starts the app at the first
// request, as ANCM does.
func StartLoopgate(bin, appDir, accel string, cpu int, extra ...string) (*Loopgate, error) {
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--accel", accel, "--access-log=false", "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, append(args, appDir)...)
	p, err := start("loopgate", cmd, cpu)
	if err != nil {
		return nil, err
	}
	l := &Loopgate{Proc: p}
	fail := func(err error) (*Loopgate, error) {
		p.Stop()
		return nil, fmt.Errorf("loopgate --accel %s: %w\n%s", accel, err, p.Log())
	}
	deadline := time.Now().Add(15 * time.Second)
	for l.Admin == "" {
		if time.Now().After(deadline) {
			return fail(errors.New("no admin endpoint logged within 15 s"))
		}
		select {
		case <-p.done:
			return fail(errors.New("exited"))
		case <-time.After(20 * time.Millisecond):
		}
		l.Admin = p.log.field("admin", "addr")
	}
	for p.Addr == "" {
		s, err := l.Status()
		if err == nil && len(s.Listeners) > 0 {
			p.Addr = s.Listeners[0].Addr
			for _, ln := range s.Listeners {
				if ln.TLS && l.TLSAddr == "" {
					l.TLSAddr = ln.Addr
				}
			}
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("no listener in /status: %v", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l, nil
}

// Status fetches loopgate's /status document.
func (l *Loopgate) Status() (status.Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, _, err := status.Fetch(ctx, l.Admin)
	return s, err
}

// BackendPID returns the PID of the app's first backend process.
func (l *Loopgate) BackendPID() (int, error) {
	s, err := l.Status()
	if err != nil {
		return 0, err
	}
	for _, a := range s.Apps {
		for _, p := range a.Processes {
			if p.PID > 0 {
				return p.PID, nil
			}
		}
	}
	return 0, errors.New("loopgate reports no running backend process")
}

// Warm sends requests over one connection until one is answered as
// expected, so the backend is started and ready; it gives up after 30 s.
func Warm(addr string, req []byte, wantBody int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := Dial(addr, req, wantBody)
		if err == nil {
			err = c.Do()
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warming %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail keeps the last 64 KiB written to it and the JSON log lines' fields
// it was asked about. Safe for concurrent use.
type tail struct {
	mu      sync.Mutex
	buf     []byte
	partial []byte
	fields  map[string]map[string]any // event -> its last log line
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 64<<10; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := t.partial[:i]
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			if ev, ok := m["event"].(string); ok {
				if t.fields == nil {
					t.fields = map[string]map[string]any{}
				}
				t.fields[ev] = m
			}
		}
		t.partial = append(t.partial[:0], t.partial[i+1:]...)
	}
	return len(p), nil
}

// field returns the string field key of the last log line with event ev.
func (t *tail) field(ev, key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, _ := t.fields[ev][key].(string)
	return s
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(string(t.buf)))
	var b strings.Builder
	for sc.Scan() {
		b.WriteString("  | ")
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String()
}
