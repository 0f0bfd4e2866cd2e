package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Release tells the fast path that this process will send nothing more on
// its accelerated connection from local to remote (its own end's
// addresses, as net.Conn's LocalAddr and RemoteAddr give them) and will
// close it after reading what the peer sends: a response body being
// relayed, for instance. If this end then falls more than QueueLimit
// behind, the peer's socket leaves the sockmap for good instead of
// falling back to the sockmap's TCP path, which costs about a quarter more
// CPU per byte than plain TCP: a slow reader of a large body costs what it
// costs over plain loopback. Until then (and if it never falls behind)
// every byte stays redirected.
//
// The promise is what makes leaving safe: a socket that leaves the map
// discards what was redirected to it and not yet read, so it leaves only
// when it holds nothing unread, and nothing can be redirected to it later
// because this end sends nothing. Writing to the connection after Release
// may lose those bytes. A connection that is not accelerated (another
// port, not in the map, or not IPv4 loopback) is no error: Release does
// nothing for it.
func (a *Accel) Release(local, remote netip.AddrPort) error {
	if !local.Addr().Unmap().Is4() || !remote.Addr().Unmap().Is4() {
		return nil
	}
	peer := sockKey(remote, local)
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return fmt.Errorf("releasing connection %s to %s: %w", local, remote, ErrClosed)
	}
	var cookie uint64
	if err := a.objs.SockHash.Lookup(&peer, &cookie); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil // not accelerated, or already released
	}
	if err := a.objs.Release.Update(&peer, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("releasing connection %s to %s: %w", local, remote, err)
	}
	return nil
}

// sockKey is the sock_hash key of the socket whose own address is local
// and whose peer's is remote: addresses in network order, ports in host
// order, as sockmap.c builds them.
func sockKey(local, remote netip.AddrPort) sockmapSockKey {
	l, r := local.Addr().Unmap().As4(), remote.Addr().Unmap().As4()
	return sockmapSockKey{
		LocalIp4:   binary.NativeEndian.Uint32(l[:]),
		RemoteIp4:  binary.NativeEndian.Uint32(r[:]),
		LocalPort:  uint32(local.Port()),
		RemotePort: uint32(remote.Port()),
	}
}

// Exclude keeps the socket fd, which must not be connected yet, out of the
// fast path: the connection it makes stays on plain TCP, both ends, for
// its whole life. It is for a connection that will carry a bulk stream
// to a reader that may fall behind (an upload larger than QueueLimit): the
// sockmap would redirect the first QueueLimit bytes and send the rest
// over its TCP path, which costs more CPU per byte than plain TCP, and
// the sending end cannot leave the map safely while its peer may still
// redirect to it (Release needs the peer's promise to send nothing).
func (a *Accel) Exclude(fd int) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return fmt.Errorf("excluding socket %d from the sockmap: %w", fd, ErrClosed)
	}
	if err := a.objs.OnTcp.Update(uint32(fd), uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("excluding socket %d from the sockmap: %w", fd, err)
	}
	return nil
}
