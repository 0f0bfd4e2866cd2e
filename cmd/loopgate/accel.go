package main

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/bpf"
	"github.com/loopgate/loopgate/internal/status"
)

// accelLoader is --accel auto or on: the eBPF sockmap fast path, loaded in
// the background from start-up so that loading it (Probe and Load, about
// 80 ms) delays neither the listener nor a request. Until it is attached,
// and for good when it cannot be (auto), it is the supervisor's port
// registry and fastpath's Sockmap all the same: ports registered meanwhile
// are added once it is attached, and Release and Exclude do nothing, so
// connections made before go over plain TCP and stay there.
type accelLoader struct {
	mode string
	log  zerolog.Logger
	done chan struct{} // closed when the load ended, attached or not

	// acc is nil until attached, and when it could not be. Read without
	// mu on every forwarded response (QueueLimit); stored under mu, so
	// that a port AddPort registers is either replayed by load or added.
	acc   atomic.Pointer[bpf.Accel]
	mu    sync.Mutex
	st    status.Accel
	err   error               // why it could not be attached
	ports map[uint16]struct{} // registered before it was attached
}

// loadAccel starts loading the fast path for mode auto or on. It reads
// loopgate's cgroup now, before the supervisor may move loopgate into its
// leaf (internal/cgroup), which the backends' cgroups are not below.
func loadAccel(mode string, log zerolog.Logger) *accelLoader {
	l := newAccelLoader(mode, log)
	cgroup, note := accelCgroup()
	go l.load(cgroup, note)
	return l
}

// newAccelLoader is a loader whose load has not started.
func newAccelLoader(mode string, log zerolog.Logger) *accelLoader {
	return &accelLoader{mode: mode, log: log, done: make(chan struct{}), ports: map[uint16]struct{}{},
		st: status.Accel{Mode: mode, Reason: "loading the eBPF programs"}}
}

// load attaches the fast path to cgroup ("" for the mount's root, note
// saying why).
func (l *accelLoader) load(cgroup, note string) {
	defer close(l.done)
	st := status.Accel{Mode: l.mode}
	err := bpf.Probe()
	var acc *bpf.Accel
	if err == nil {
		opts := bpf.Options{CgroupPath: cgroup}
		st.CgroupNote = note
		if st.CgroupNote != "" {
			l.log.Warn().Str("event", "accel_cgroup_root").Str("reason", st.CgroupNote).
				Msg("eBPF sockmap acceleration attached to the cgroup v2 root: connections of every local process to a backend port qualify, not only loopgate's")
		}
		acc, err = bpf.Load(opts)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		st.Reason = err.Error()
		l.st, l.err = st, fmt.Errorf("--accel on: eBPF sockmap acceleration unavailable: %w", err)
		if l.mode != "on" {
			l.log.Warn().Str("event", "accel_unavailable").Err(err).Msg("eBPF sockmap acceleration unavailable; forwarding over plain loopback TCP (--accel off silences this)")
		}
		return
	}
	for port := range l.ports {
		if err := acc.AddPort(port); err != nil {
			l.log.Warn().Err(err).Msg("backend port registered while the eBPF programs loaded stays on plain TCP")
		}
	}
	st.Active = true
	st.Cgroup = acc.CgroupPath()
	l.acc.Store(acc)
	l.st, l.ports = st, nil
	l.log.Info().Str("event", "accel_on").Str("cgroup", acc.CgroupPath()).
		Msg("eBPF sockmap acceleration on: loopback traffic between loopgate and its backends (processes in this cgroup) bypasses the TCP stack")
}

// wait blocks until the load ended and says why it failed, if it did.
func (l *accelLoader) wait() error {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// attached returns the fast path, or nil while it loads or when it could
// not be attached.
func (l *accelLoader) attached() *bpf.Accel { return l.acc.Load() }

// AddPort implements supervisor.PortRegistry.
func (l *accelLoader) AddPort(port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc := l.acc.Load()
	if acc == nil {
		if l.ports != nil {
			l.ports[port] = struct{}{}
		}
		return nil
	}
	return acc.AddPort(port)
}

// RemovePort implements supervisor.PortRegistry.
func (l *accelLoader) RemovePort(port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc := l.acc.Load()
	if acc == nil {
		delete(l.ports, port)
		return nil
	}
	return acc.RemovePort(port)
}

// QueueLimit implements fastpath.Sockmap.
func (l *accelLoader) QueueLimit() int {
	if acc := l.attached(); acc != nil {
		return acc.QueueLimit()
	}
	return bpf.DefaultQueueLimit
}

// Release implements fastpath.Sockmap.
func (l *accelLoader) Release(local, remote netip.AddrPort) error {
	if acc := l.attached(); acc != nil {
		return acc.Release(local, remote)
	}
	return nil
}

// Exclude implements fastpath.Sockmap.
func (l *accelLoader) Exclude(fd int) error {
	if acc := l.attached(); acc != nil {
		return acc.Exclude(fd)
	}
	return nil
}

// status is /status's acceleration, with the counters once attached.
func (l *accelLoader) status() status.Accel {
	l.mu.Lock()
	st, acc := l.st, l.acc.Load()
	l.mu.Unlock()
	if acc != nil {
		if c, err := acc.Counters(); err == nil {
			st.Redirected, st.Passed, st.Fallbacks, st.Released = c.Redirected, c.Passed, c.Fallbacks, c.Released
		}
	}
	return st
}

// Close detaches the programs (after the load, if it still runs) and
// releases their descriptors; see bpf.Accel.Close.
func (l *accelLoader) Close() error {
	if acc := l.loaded(); acc != nil {
		return acc.Close()
	}
	return nil
}

// loaded waits for the load to end and returns the fast path, nil when it
// could not be attached.
func (l *accelLoader) loaded() *bpf.Accel {
	<-l.done
	return l.attached()
}

// accelCgroup picks the cgroup the sockops program is attached to:
// loopgate's own, which holds the backends' cgroups (internal/cgroup puts
// them below it) and nothing loopgate did not start unless the service
// manager put it there, so other local processes' connections to a backend
// port stay on TCP. An upgrade's new process is forked by the old one and
// shares its cgroup; as PID 1 of a container it is the container's cgroup.
// When its own cgroup cannot be found it returns "" (the mount's root) and
// why.
func accelCgroup() (dir, why string) {
	dir, err := bpf.OwnCgroup()
	if err != nil {
		return "", err.Error()
	}
	return dir, ""
}
