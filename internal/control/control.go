package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Commands.
const (
	Recycle = "recycle"
	Stop    = "stop"
	Start   = "start"
)

// Request is what a subcommand asks. It travels as one JSON line.
type Request struct {
	// Command is Recycle, Stop or Start.
	Command string `json:"command"`
	// Apps are virtual paths as the operator typed them; empty means every
	// app (Recycle only).
	Apps []string `json:"apps,omitempty"`
}

// Result is what became of one app.
type Result struct {
	App     string `json:"app"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Response answers a Request. It travels as one JSON line.
type Response struct {
	// Error refuses the whole request (an unknown command or app), and no
	// app was touched.
	Error   string   `json:"error,omitempty"`
	Results []Result `json:"results,omitempty"`
}

// Handler does what a request asks. ctx ends when the client hangs up or
// the server closes.
type Handler func(ctx context.Context, req Request) Response

// maxRequest bounds a request line.
const maxRequest = 64 << 10

// readTimeout bounds how long a connection may take to send its request.
const readTimeout = 5 * time.Second

var (
	// ErrInUse: a running process answers on the socket path already
	// (another loopgate serve).
	ErrInUse = errors.New("another process listens on the control socket")
	// ErrUnreachable: nothing listens on the socket path (no such file, or
	// a stale socket).
	ErrUnreachable = errors.New("no loopgate serve listens on the control socket")
)

// DefaultPath is where serve puts the socket and the subcommands look for
// it without --control: /run/loopgate/control.sock for root (uid 0), else
// $XDG_RUNTIME_DIR/loopgate/control.sock (the user's own runtime
// directory, made by systemd-logind), else
// <temp dir>/loopgate-<uid>/control.sock.
func DefaultPath(uid int, getenv func(string) string) string {
	if uid == 0 {
		return "/run/loopgate/control.sock"
	}
	if d := getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "loopgate", "control.sock")
	}
	tmp := getenv("TMPDIR")
	if tmp == "" || !filepath.IsAbs(tmp) {
		tmp = "/tmp"
	}
	return filepath.Join(tmp, "loopgate-"+strconv.Itoa(uid), "control.sock")
}

// Options configures Listen.
type Options struct {
	// Path is the socket's path.
	Path string
	// Group, when set (a group name or a numeric id), lets that group's
	// members connect too: the socket is mode 0660 and owned by the group.
	// "" gives mode 0600, loopgate's user only.
	Group string
	// Handler answers requests.
	Handler Handler
	// Inherited is a socket already listening at Path, handed over by the
	// loopgate this process replaces (a binary upgrade): Listen serves it
	// as it is, binding nothing and leaving its file and mode alone.
	Inherited *net.UnixListener
}

// Server serves the control socket. Safe for concurrent use.
type Server struct {
	path    string
	ln      *net.UnixListener
	handler Handler
	ident   fs.FileInfo // the socket file as created, to remove only ours
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	kept    atomic.Bool // HandedOver: Close leaves the socket file
}

// Listen creates the socket at opts.Path with its permissions, replacing a
// stale socket (one nobody listens on, left by a serve that was killed),
// and refusing with ErrInUse when a running process answers on it, or when
// the path is something other than a socket. The socket's directory is
// created (0755 as root under /run, where a group member must traverse
// it; else 0700) when missing; an existing one must belong to loopgate's
// user or root and not be writable by others (unless sticky, as /tmp).
func Listen(opts Options) (*Server, error) {
	if opts.Path == "" || opts.Handler == nil {
		return nil, errors.New("control socket: no path or no handler")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	gid := -1
	if opts.Group != "" {
		if gid, err = lookupGroup(opts.Group); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	if opts.Inherited != nil {
		opts.Inherited.SetUnlinkOnClose(false)
		ident, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("control socket %s: inherited: %w", path, err)
		}
		s := &Server{path: path, ln: opts.Inherited, handler: opts.Handler, ident: ident}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		return s, nil
	}
	if err := prepareDir(filepath.Dir(path), gid >= 0); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := checkExisting(path); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// Bound under a temporary name, given its mode and group, then renamed
	// into place: the path never names a socket with looser permissions
	// (the umask's) and a stale one is replaced in one step.
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	ident, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	s := &Server{path: path, ln: ln, handler: opts.Handler, ident: ident}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Listener is the listening socket, for handing it over to the process of
// a binary upgrade.
func (s *Server) Listener() *net.UnixListener { return s.ln }

// HandedOver says another process (a binary upgrade's) serves the socket
// now: Close then closes this process's descriptor but leaves the file.
func (s *Server) HandedOver() { s.kept.Store(true) }

// Path is the socket's absolute path.
func (s *Server) Path() string { return s.path }

// lookupGroup resolves a group name or numeric id.
func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil && id >= 0 {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(grp.Gid)
}

// prepareDir makes the socket's directory, or checks one that exists.
func prepareDir(dir string, group bool) error {
	mode := os.FileMode(0o700)
	if group || os.Geteuid() == 0 {
		mode = 0o755
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("directory %s belongs to uid %d, not to loopgate's user (%d) or root: "+
			"someone else could replace the socket; give --control a path in a directory of your own", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("directory %s is writable by everyone: someone else could replace the socket", dir)
	}
	return nil
}

// checkExisting looks at what is at path: nothing, or a stale socket, is
// fine; a live socket or anything else is not.
func checkExisting(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not replacing it", fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w (is another loopgate serve running? stop it, or give this one --control with another path, or --control '' for none)", ErrInUse)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // stale: replaced by the rename
	}
	return err
}

// Serve accepts connections until Close. It returns nil after Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("control socket: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, maxRequest)).ReadBytes('\n')
	if err != nil {
		return
	}
	var req Request
	var resp Response
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "malformed request: " + err.Error()
	} else {
		c.SetReadDeadline(time.Time{})
		ctx, cancel := context.WithCancel(s.ctx)
		// The client hanging up (its timeout, ^C) ends ctx; it sends
		// nothing more, so a read returns only then.
		go func() {
			var b [1]byte
			c.Read(b[:])
			cancel()
		}()
		resp = s.handler(ctx, req)
		cancel()
	}
	out, _ := json.Marshal(resp)
	c.SetWriteDeadline(time.Now().Add(readTimeout))
	c.Write(append(out, '\n'))
}

// Close stops accepting, cancels the requests being handled, waits for
// them to answer, and removes the socket file if it is still the one
// Listen made (a later serve may have replaced it).
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
		if fi, lerr := os.Lstat(s.path); lerr == nil && os.SameFile(fi, s.ident) && !s.kept.Load() {
			os.Remove(s.path)
		}
	})
	return err
}

// Do sends req to the serve listening at path and returns its response.
// It fails with an error wrapping ErrUnreachable when nothing listens
// there, and with the system's error (permission denied) when the socket
// is not ours to use.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w at %s", ErrUnreachable, path)
		}
		return Response{}, fmt.Errorf("control socket %s: %w", path, unwrapOp(err))
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	line, _ := json.Marshal(req)
	if _, err := c.Write(append(line, '\n')); err != nil {
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	data, err := bufio.NewReader(io.LimitReader(c, 16<<20)).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Response{}, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(data, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: malformed answer: %w", path, err)
	}
	return resp, nil
}

// unwrapOp drops net.OpError's "dial unix PATH:" prefix, which the caller
// words itself.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err
		}
		return oe.Err
	}
	return err
}
