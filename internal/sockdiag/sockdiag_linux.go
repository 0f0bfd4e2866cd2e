// Package sockdiag lists the listening TCP sockets of loopgate's network
// namespace through the kernel's socket diagnostics (NETLINK_SOCK_DIAG,
// what `ss -lt` uses), asking for the LISTEN state only.
//
// It exists for its cost: reading /proc/net/tcp walks every bucket of the
// kernel's established-connection hash on each read, milliseconds of
// kernel time however few sockets there are, while a LISTEN-only dump
// walks the listening hash alone. A start that has not listened yet looks
// at its listeners every so often on the CPU its app is starting on.
// Linux only.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket is one listening socket: its local address and its inode, the N
// in the "socket:[N]" link of a process's file descriptor.
type Socket struct {
	Addr  netip.AddrPort
	Inode uint32
}

// Sizes from linux/inet_diag.h: struct inet_diag_req_v2 and the head of
// struct inet_diag_msg.
const (
	reqLen   = 56
	msgLen   = 72
	tcpfList = 1 << 10 // TCPF_LISTEN: 1 << TCP_LISTEN
)

// ErrTruncated is a dump the kernel answered with a message shorter than
// struct inet_diag_msg.
var ErrTruncated = errors.New("sockdiag: truncated inet_diag message")

// Listening returns the TCP sockets in the LISTEN state, IPv4 and IPv6.
func Listening() ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	var out []Socket
	buf := make([]byte, 32<<10)
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if out, err = dump(fd, family, buf, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dump asks for one family's listeners and appends them to out.
func dump(fd int, family uint8, buf []byte, out []Socket) ([]Socket, error) {
	req := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], uint32(family)) // sequence number
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], tcpfList)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return out, fmt.Errorf("sockdiag: request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("sockdiag: answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return out, fmt.Errorf("sockdiag: answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return out, fmt.Errorf("sockdiag: %w", syscall.Errno(errno))
					}
				}
				return out, nil
			}
			s, err := parseMsg(m.Data)
			if err != nil {
				return out, err
			}
			out = append(out, s)
		}
	}
}

// parseMsg reads a struct inet_diag_msg: family, state, timer, retrans,
// then inet_diag_sockid (source port and destination port big-endian,
// source and destination addresses, 16 bytes each, interface, cookie),
// expires, rqueue, wqueue, uid, inode.
func parseMsg(b []byte) (Socket, error) {
	if len(b) < msgLen {
		return Socket{}, ErrTruncated
	}
	port := binary.BigEndian.Uint16(b[4:6])
	var addr netip.Addr
	if b[0] == unix.AF_INET {
		addr = netip.AddrFrom4([4]byte(b[8:12]))
	} else {
		addr = netip.AddrFrom16([16]byte(b[8:24]))
	}
	return Socket{Addr: netip.AddrPortFrom(addr, port), Inode: binary.NativeEndian.Uint32(b[68:72])}, nil
}
