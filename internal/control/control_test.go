package control

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func echo(ctx context.Context, req Request) Response {
	var rs []Result
	for _, a := range req.Apps {
		rs = append(rs, Result{App: a, Message: req.Command + " done"})
	}
	return Response{Results: rs}
}

// socketDir is a short directory (a socket path has to fit in 108 bytes)
// removed after the test.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lgctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func listen(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return 5 s after Close")
		}
	})
	return s
}

func do(t *testing.T, path string, req Request) (Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Do(ctx, path, req)
}

// TestRoundTripAndMode: a request reaches the handler and its answer the
// client; the socket is 0600 and goes away on Close.
func TestRoundTripAndMode(t *testing.T) {
	path := filepath.Join(socketDir(t), "control.sock")
	s := listen(t, Options{Path: path, Handler: echo})
	resp, err := do(t, path, Request{Command: Recycle, Apps: []string{"/a", "/b"}})
	if err != nil || len(resp.Results) != 2 || resp.Results[1].App != "/b" || resp.Results[1].Message != "recycle done" {
		t.Fatalf("got %+v, %v", resp, err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	if _, err := os.Lstat(path + ".tmp" + strconv.Itoa(os.Getpid())); !os.IsNotExist(err) {
		t.Errorf("temporary socket name left behind: %v", err)
	}
	s.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := do(t, path, Request{Command: Stop}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("after Close: %v, want ErrUnreachable", err)
	}
}

// TestStaleAndInUse: a socket nobody listens on (a killed serve's) is
// replaced; one a process answers on is refused with ErrInUse, and so is
// a path that is not a socket. A Close does not remove a socket that a
// later serve put at the same path.
func TestStaleAndInUse(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, "control.sock")
	// A stale socket: bound, then its listener closed without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	s := listen(t, Options{Path: path, Handler: echo})
	if _, err := do(t, path, Request{Command: Start, Apps: []string{"/"}}); err != nil {
		t.Fatalf("after replacing a stale socket: %v", err)
	}
	if _, err := Listen(Options{Path: path, Handler: echo}); !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen on a live socket: %v, want ErrInUse", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen(Options{Path: file, Handler: echo}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Errorf("the regular file was touched")
	}
	// Replaced behind s's back (by hand, as a second serve would after s
	// hung): s's Close must leave the new one alone.
	os.Remove(path)
	s2 := listen(t, Options{Path: path, Handler: echo})
	s.Close()
	if _, err := do(t, path, Request{Command: Start, Apps: []string{"/"}}); err != nil {
		t.Errorf("the second server's socket went with the first's Close: %v", err)
	}
	s2.Close()
}

// TestDirectoryChecks: a socket directory that someone else could write
// to is refused; a missing one is made 0700.
func TestDirectoryChecks(t *testing.T) {
	dir := socketDir(t)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := Listen(Options{Path: filepath.Join(open, "c.sock"), Handler: echo}); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("world-writable directory: %v", err)
	}
	made := filepath.Join(dir, "made", "sub")
	s := listen(t, Options{Path: filepath.Join(made, "c.sock"), Handler: echo})
	fi, err := os.Stat(made)
	want := os.FileMode(0o700)
	if os.Geteuid() == 0 {
		want = 0o755
	}
	if err != nil || fi.Mode().Perm() != want {
		t.Errorf("made directory: %v, %v; want %v", fi.Mode(), err, want)
	}
	s.Close()
}

func TestDefaultPath(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		uid  int
		env  map[string]string
		want string
	}{
		{0, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"}, "/run/loopgate/control.sock"},
		{1000, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/loopgate/control.sock"},
		{1000, map[string]string{"TMPDIR": "/var/tmp"}, "/var/tmp/loopgate-1000/control.sock"},
		{1000, map[string]string{"XDG_RUNTIME_DIR": "relative"}, "/tmp/loopgate-1000/control.sock"},
	} {
		if got := DefaultPath(c.uid, env(c.env)); got != c.want {
			t.Errorf("DefaultPath(%d, %v) = %q, want %q", c.uid, c.env, got, c.want)
		}
	}
}

// TestClientHangUpCancels: the handler's ctx ends when the client gives
// up waiting.
func TestClientHangUpCancels(t *testing.T) {
	path := filepath.Join(socketDir(t), "control.sock")
	ended := make(chan struct{})
	listen(t, Options{Path: path, Handler: func(ctx context.Context, req Request) Response {
		select {
		case <-ctx.Done():
			close(ended)
		case <-time.After(10 * time.Second):
		}
		return Response{}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Do(ctx, path, Request{Command: Recycle}); err == nil {
		t.Fatal("Do returned without an error after its timeout")
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's ctx did not end 5 s after the client hung up")
	}
}

// otherUserEnv makes the test binary, started again as another user, dial
// the socket named in it and exit 0 (connected), 13 (EACCES) or 1.
const otherUserEnv = "LOOPGATE_CONTROL_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(otherUserEnv); path != "" {
		c, err := net.Dial("unix", path)
		switch {
		case err == nil:
			c.Close()
			os.Exit(0)
		case errors.Is(err, os.ErrPermission):
			os.Exit(13)
		}
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// dialAs dials path from this test binary run as user:group with no
// supplementary groups, and returns its exit code.
func dialAs(t *testing.T, exe, path, user, group string) int {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid", user, "--regid", group, "--clear-groups", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), otherUserEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("setpriv: %v %s", err, out)
	}
	return 0
}

// TestOtherUsers: another local user cannot connect (mode 0600), though
// the directory lets it reach the file; with Group, that group's members
// can. Root only (setpriv); CI runs as root.
func TestOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv(1)")
	}
	dir := socketDir(t)
	os.Chmod(dir, 0o755) // the socket's directory lets anyone reach the file
	// A copy of the test binary that nobody can run (go test's build
	// directory is 0700).
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "dialer")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "control.sock")
	s := listen(t, Options{Path: path, Handler: echo})
	if code := dialAs(t, exe, path, "nobody", "nogroup"); code != 13 {
		t.Errorf("nobody dialing a 0600 socket: exit %d, want 13 (permission denied)", code)
	}
	s.Close()
	gpath := filepath.Join(dir, "group.sock")
	listen(t, Options{Path: gpath, Handler: echo, Group: "nogroup"})
	fi, _ := os.Lstat(gpath)
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("group socket mode %v, want 0660", fi.Mode().Perm())
	}
	if code := dialAs(t, exe, gpath, "nobody", "nogroup"); code != 0 {
		t.Errorf("nobody in nogroup dialing a 0660 nogroup socket: exit %d, want 0", code)
	}
	if code := dialAs(t, exe, gpath, "nobody", "daemon"); code != 13 {
		t.Errorf("nobody outside the group: exit %d, want 13", code)
	}
}
