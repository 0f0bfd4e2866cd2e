package sdnotify

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket the way systemd does and returns a function
// that reads the next datagram (bounded by a timeout).
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading datagram: %v", err)
		}
		return string(buf[:n])
	}
}

func TestMessagesOverPathSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	next := listen(t, sock)
	n, err := FromEnviron([]string{"HOME=/", "NOTIFY_SOCKET=" + sock})
	if err != nil || n == nil {
		t.Fatalf("FromEnviron = %v, %v", n, err)
	}
	if err := n.Ready("serving 1 app"); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), "READY=1\nSTATUS=serving 1 app\n"; got != want {
		t.Errorf("Ready sent %q, want %q", got, want)
	}
	if err := n.Stopping("draining\nnow"); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), "STOPPING=1\nSTATUS=draining now\n"; got != want {
		t.Errorf("Stopping sent %q, want %q", got, want)
	}
	if err := n.Status("hello"); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), "STATUS=hello\n"; got != want {
		t.Errorf("Status sent %q, want %q", got, want)
	}
	if err := n.Ready(""); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), "READY=1\n"; got != want {
		t.Errorf("Ready(\"\") sent %q, want %q", got, want)
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	// An abstract name: systemd may hand one out, and nothing is left on disk.
	sock := "@loopgate-test-" + strconv.Itoa(unix.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	next := listen(t, sock)
	n, err := FromEnviron([]string{"NOTIFY_SOCKET=" + sock})
	if err != nil {
		t.Fatal(err)
	}
	var before unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	if err := n.Reloading("reloading"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(next(), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || lines[2] != "STATUS=reloading" {
		t.Fatalf("Reloading sent %q", lines)
	}
	v, ok := strings.CutPrefix(lines[1], "MONOTONIC_USEC=")
	if !ok {
		t.Fatalf("second line %q, want MONOTONIC_USEC=", lines[1])
	}
	usec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC=%q: %v", v, err)
	}
	if b := before.Sec*1e6 + before.Nsec/1e3; usec < b || usec > b+5e6 {
		t.Errorf("MONOTONIC_USEC=%d, want within 5 s after %d", usec, b)
	}
}

func TestUnsetMeansSilent(t *testing.T) {
	n, err := FromEnviron([]string{"PATH=/bin", "NOTIFY_SOCKET="})
	if err != nil || n != nil {
		t.Fatalf("FromEnviron with empty NOTIFY_SOCKET = %v, %v; want nil, nil", n, err)
	}
	// Every method is a no-op on nil.
	if err := n.Ready("x"); err != nil {
		t.Error(err)
	}
	if err := n.Reloading("x"); err != nil {
		t.Error(err)
	}
	if n.Socket() != "" {
		t.Error("nil Notifier has a socket")
	}
}

func TestBadSocket(t *testing.T) {
	_, err := FromEnviron([]string{"NOTIFY_SOCKET=vsock:2:1234"})
	if !errors.Is(err, ErrBadSocket) || !strings.Contains(err.Error(), "vsock:2:1234") {
		t.Fatalf("err = %v, want ErrBadSocket naming the value", err)
	}
}

func TestMissingSocketIsAnError(t *testing.T) {
	n, err := FromEnviron([]string{"NOTIFY_SOCKET=" + filepath.Join(t.TempDir(), "gone.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready("x"); err == nil || !strings.HasPrefix(err.Error(), "sd_notify: ") {
		t.Fatalf("Ready to a missing socket: %v, want an sd_notify error", err)
	}
}
