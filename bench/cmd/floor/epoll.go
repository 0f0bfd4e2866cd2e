package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pair is a client connection and the backend connection made for it.
type pair struct {
	client, backend int
	in              []byte // the client's bytes until a whole head is there
	out             []byte // the head sent to the backend
}

// forwarded stands for the fields loopgate adds to a request head.
var forwarded = []byte("X-Forwarded-For: 127.0.0.1:40000\r\nX-Forwarded-Proto: http\r\nMS-ASPNETCORE-TOKEN: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n\r\n")

// serveEpoll proxies listen to backend from one epoll loop on one locked
// thread (see the package comment). A request with a body, or a head
// past 16 KiB, closes the connection.
func serveEpoll(listen, backend string, raw bool) {
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	la, lerr := netip.ParseAddrPort(listen)
	ba, berr := netip.ParseAddrPort(backend)
	if lerr != nil || berr != nil || !la.Addr().Is4() || !ba.Addr().Is4() {
		fail(fmt.Errorf("IPv4 ADDR:PORT expected: %q %q", listen, backend))
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		fail(err)
	}
	_ = unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		fail(err)
	}
	if err := unix.Listen(lfd, 1024); err != nil {
		fail(err)
	}
	ep, err := unix.EpollCreate1(0)
	if err != nil {
		fail(err)
	}
	watch := func(fd int) error {
		return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	if err := watch(lfd); err != nil {
		fail(err)
	}
	read, write := unix.Read, unix.Write
	if raw {
		read, write = rawRead, rawWrite
	}
	pairs := map[int]*pair{}
	end := func(p *pair) {
		_ = unix.Close(p.client)
		_ = unix.Close(p.backend)
		delete(pairs, p.client)
		delete(pairs, p.backend)
	}
	buf := make([]byte, 64<<10)
	var events [128]unix.EpollEvent
	for {
		n, err := unix.EpollWait(ep, events[:], -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					c, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK)
					if err != nil {
						break
					}
					b, err := dialBlocking(ba)
					if err != nil {
						fail(err)
					}
					p := &pair{client: c, backend: b, in: make([]byte, 0, 1024), out: make([]byte, 0, 1024)}
					pairs[c], pairs[b] = p, p
					_ = unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
					if watch(c) != nil || watch(b) != nil {
						end(p)
					}
				}
				continue
			}
			p := pairs[fd]
			if p == nil {
				continue
			}
			m, err := read(fd, buf)
			if err == unix.EAGAIN {
				continue
			}
			if m <= 0 || err != nil {
				end(p)
				continue
			}
			if fd == p.backend {
				if _, err := write(p.client, buf[:m]); err != nil {
					end(p)
				}
				continue
			}
			p.in = append(p.in, buf[:m]...)
			i := bytes.Index(p.in, []byte("\r\n\r\n"))
			if i < 0 {
				if len(p.in) > 16<<10 {
					end(p)
				}
				continue
			}
			if i+4 != len(p.in) || bytes.Contains(p.in[:i], []byte("Content-Length")) {
				end(p) // a body or a pipelined request: not served here
				continue
			}
			p.out = append(append(p.out[:0], p.in[:i+2]...), forwarded...)
			p.in = p.in[:0]
			if _, err := write(p.backend, p.out); err != nil {
				end(p)
			}
		}
	}
}

// dialBlocking connects to a, then makes the socket non-blocking.
func dialBlocking(a netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return fd, unix.SetNonblock(fd, true)
}

// rawRead and rawWrite skip the runtime's entersyscall/exitsyscall: fine
// for a non-blocking socket, which never waits in the kernel.
func rawRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "serve-epoll:", err)
	os.Exit(1)
}
