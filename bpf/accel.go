package bpf

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Options configures Load. The zero value is ready to use.
type Options struct {
	// CgroupPath is the cgroup v2 directory the sockops program is
	// attached to: connections made or accepted by processes in it or
	// below it are candidates for acceleration. Both ends must qualify:
	// the client's socket counts in the cgroup of the process that
	// created it, the server's accepted socket in the listener's (a
	// child socket inherits its listener's cgroup), and a server's
	// socket enters the map only if its client's did. loopgate passes
	// its own cgroup (OwnCgroup), which holds its backends' cgroups.
	// Default: the root of the cgroup v2 mount (CgroupV2Mount), where
	// every local process qualifies.
	CgroupPath string
	// QueueLimit is how many bytes a receiving socket may hold unread
	// before its peer stops redirecting to it and goes back to TCP, with
	// its flow control, for the rest of the connection. Redirection
	// ignores the receiver's buffer size, so this is what bounds the
	// kernel memory a slow reader can pin: per connection and direction,
	// about QueueLimit plus one message (up to 64 KiB or so) plus what TCP
	// buffers after the switch. Default: DefaultQueueLimit; at most
	// 2 GiB - 1 bytes.
	QueueLimit int
}

// DefaultQueueLimit is the default Options.QueueLimit, in bytes: about
// what plain TCP lets a writer queue on loopback (tcp_wmem's default
// maximum) before it blocks.
const DefaultQueueLimit = 4 << 20

// Accel is a loaded and attached sockmap fast path. From Load until Close,
// every TCP connection established over 127.0.0.0/8 in this process's
// network namespace whose server port is registered with AddPort is put
// in the sockmap and its messages bypass the loopback TCP/IP stack.
//
// An Accel is safe for concurrent use. It holds only file descriptors:
// nothing is pinned to bpffs, so when the process exits, even by SIGKILL,
// the kernel detaches the programs. Connections accelerated before Close
// or exit stay accelerated until they close (see the package docs).
type Accel struct {
	mu         sync.RWMutex // guards closed against Close
	closed     bool
	objs       sockmapObjects
	sockops    link.Link
	cgroupPath string
	queueLimit int
}

// Load loads the programs, attaches the sk_msg program to the sockmap and
// the sockops program to opts.CgroupPath. Errors wrapping ErrNotSupported
// mean the host cannot do it (call Probe first to find out cheaply);
// anything else is a real failure. Nothing is left loaded on error.
func Load(opts Options) (*Accel, error) {
	queueLimit := opts.QueueLimit
	if queueLimit == 0 {
		queueLimit = DefaultQueueLimit
	}
	if queueLimit < 0 || queueLimit > math.MaxInt32 {
		return nil, fmt.Errorf("loading sockmap: QueueLimit %d bytes out of range 1..%d", opts.QueueLimit, math.MaxInt32)
	}
	cgroupPath := opts.CgroupPath
	if cgroupPath == "" {
		var err error
		if cgroupPath, err = CgroupV2Mount(); err != nil {
			return nil, fmt.Errorf("loading sockmap: %w", err)
		}
	}
	cgroup, err := os.Open(cgroupPath)
	if err != nil {
		return nil, fmt.Errorf("loading sockmap: opening cgroup: %w", err)
	}
	defer cgroup.Close()

	cookie, err := netnsCookie()
	if err != nil {
		return nil, fmt.Errorf("loading sockmap: %w", err)
	}
	spec, err := loadSockmap()
	if err != nil {
		return nil, fmt.Errorf("loading sockmap: %w", err)
	}
	var vars sockmapVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		return nil, fmt.Errorf("loading sockmap: %w", err)
	}
	if err := vars.NetnsCookie.Set(cookie); err != nil {
		return nil, fmt.Errorf("loading sockmap: setting netns_cookie: %w", err)
	}
	if err := vars.QueueLimit.Set(uint32(queueLimit)); err != nil {
		return nil, fmt.Errorf("loading sockmap: setting queue_limit: %w", err)
	}

	a := &Accel{cgroupPath: cgroupPath, queueLimit: queueLimit}
	if err := spec.LoadAndAssign(&a.objs, nil); err != nil {
		return nil, fmt.Errorf("loading sockmap: %w", wrapNotSupported(err))
	}
	// The sk_msg program is attached to the map, not to a link: the
	// attachment lives exactly as long as the map's user references (our
	// fds), so it needs no detaching of its own.
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  a.objs.SockHash.FD(),
		Program: a.objs.LoopgateSkMsg,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		a.objs.Close()
		return nil, fmt.Errorf("loading sockmap: attaching sk_msg program: %w", wrapNotSupported(err))
	}
	// A bpf_link, never the legacy BPF_PROG_ATTACH that link.AttachCgroup
	// falls back to: a legacy cgroup attachment outlives the process and
	// would keep accelerating after a SIGKILL.
	a.sockops, err = link.AttachRawLink(link.RawLinkOptions{
		Target:  int(cgroup.Fd()),
		Program: a.objs.LoopgateSockops,
		Attach:  ebpf.AttachCGroupSockOps,
	})
	if err != nil {
		a.objs.Close()
		return nil, fmt.Errorf("loading sockmap: attaching sockops program to %s: %w", cgroupPath, wrapNotSupported(err))
	}
	return a, nil
}

func wrapNotSupported(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// netnsCookie returns the cookie of this process's network namespace
// (SO_NETNS_COOKIE, Linux 5.14+), which the sockops program compares with
// bpf_get_netns_cookie.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("reading netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, fmt.Errorf("%w: SO_NETNS_COOKIE unavailable", ErrNotSupported)
	}
	if err != nil {
		return 0, fmt.Errorf("reading netns cookie: %w", err)
	}
	return cookie, nil
}

// CgroupPath returns the cgroup the sockops program is attached to.
func (a *Accel) CgroupPath() string { return a.cgroupPath }

// QueueLimit returns the queue limit in effect, in bytes.
func (a *Accel) QueueLimit() int { return a.queueLimit }

// AddPort registers a backend port: connections to it established from
// now on are accelerated (existing ones are not). Adding a registered port
// again is a no-op. The port table holds 4096 ports.
func (a *Accel) AddPort(port uint16) error {
	if port == 0 {
		return errors.New("registering backend port: port 0 is not a listening port")
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return fmt.Errorf("registering backend port %d: %w", port, ErrClosed)
	}
	if err := a.objs.BackendPorts.Update(port, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("registering backend port %d: %w", port, err)
	}
	return nil
}

// RemovePort unregisters a backend port: connections established from now
// on are not accelerated. Connections already in the sockmap stay there
// until they close, because removing a live socket from the map would
// discard bytes already redirected to it. Removing a port that is not
// registered is a no-op.
func (a *Accel) RemovePort(port uint16) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return fmt.Errorf("unregistering backend port %d: %w", port, ErrClosed)
	}
	err := a.objs.BackendPorts.Delete(port)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregistering backend port %d: %w", port, err)
	}
	return nil
}

// SocketCount returns the number of sockets in the sockmap (two per
// accelerated connection whose ends are both open). The kernel removes a
// socket when it closes; the count is for tests and status pages, and it
// walks the whole map.
func (a *Accel) SocketCount() (int, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return 0, fmt.Errorf("counting sockmap sockets: %w", ErrClosed)
	}
	keys, err := a.sockKeys()
	if err != nil {
		return 0, fmt.Errorf("counting sockmap sockets: %w", err)
	}
	return len(keys), nil
}

// sockKeys lists the keys of the sockmap. The caller holds a.mu.
func (a *Accel) sockKeys() ([]sockmapSockKey, error) {
	var keys []sockmapSockKey
	var key, next sockmapSockKey
	var cur any // nil starts the walk at the first key
	for {
		err := a.objs.SockHash.NextKey(cur, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
		keys = append(keys, next)
		key = next
		cur = &key
	}
}

// Close stops accelerating new connections and releases every file
// descriptor. It does not de-accelerate open connections: the kernel
// keeps the sk_msg program and the sockmap alive for them until the last
// one closes, and their bytes keep flowing. Close is idempotent.
func (a *Accel) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	// The link first, so no socket is inserted while the maps go away.
	if err := a.sockops.Close(); err != nil {
		errs = append(errs, fmt.Errorf("detaching sockops program: %w", err))
	}
	if err := a.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing sockmap objects: %w", err))
	}
	return errors.Join(errs...)
}
