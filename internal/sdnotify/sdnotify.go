package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EnvVar is the environment variable naming the notification socket.
const EnvVar = "NOTIFY_SOCKET"

// ErrBadSocket is returned by FromEnviron when NOTIFY_SOCKET is set to
// something that is neither an absolute path nor an abstract '@' name
// (systemd's vsock: form is not supported).
var ErrBadSocket = errors.New("unsupported NOTIFY_SOCKET")

// Notifier sends state changes to the service manager. The zero value and a
// nil *Notifier send nothing, so callers never need to check whether loopgate
// runs under systemd. A Notifier is safe for concurrent use: each message is
// one datagram on its own connection.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnviron returns a Notifier for the socket named by NOTIFY_SOCKET in
// environ (KEY=VALUE pairs, as os.Environ returns), or nil when it is unset
// or empty.
func FromEnviron(environ []string) (*Notifier, error) {
	var path string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, EnvVar+"="); ok {
			path = v // the last one wins, as with getenv
		}
	}
	if path == "" {
		return nil, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return nil, fmt.Errorf("%w %q: want an absolute path or an @abstract name", ErrBadSocket, path)
	}
	// Go's net package maps a leading '@' to the Linux abstract namespace.
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
}

// Socket returns the socket name, or "" for a nil Notifier.
func (n *Notifier) Socket() string {
	if n == nil || n.addr == nil {
		return ""
	}
	return n.addr.Name
}

// Send sends the given KEY=VALUE assignments as one datagram; empty strings
// are left out.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	kept := assignments[:0:0]
	for _, a := range assignments {
		if a != "" {
			kept = append(kept, a)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(kept, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says startup (or a reload) finished, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", status1(status))
}

// Reloading says a reload started. MONOTONIC_USEC is the CLOCK_MONOTONIC
// time of the call, which systemd 253+ uses to match the reload to the
// READY=1 that ends it.
func (n *Notifier) Reloading(status string) error {
	if n == nil {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sd_notify: reading CLOCK_MONOTONIC: %w", err)
	}
	usec := ts.Sec*1_000_000 + ts.Nsec/1_000
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(usec, 10), status1(status))
}

// Stopping says loopgate has begun to shut down.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", status1(status))
}

// Status updates the free-form status line shown by `systemctl status`.
func (n *Notifier) Status(status string) error {
	return n.Send(status1(status))
}

// status1 makes a STATUS= assignment ("" for no status); the protocol is
// newline-separated, so a newline inside the text would start a bogus
// assignment.
func status1(s string) string {
	if s == "" {
		return ""
	}
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}
