package bpf

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
)

// Request and response sizes of the ping-pong: a small HTTP request and a
// small response, the shape of most proxied traffic.
const (
	pingSize = 256
	pongSize = 1024
)

// pingPongServer answers every pingSize-byte request with a pongSize-byte
// response until the connection closes.
func pingPongServer(b *testing.B, ln *net.TCPListener) {
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, resp := make([]byte, pingSize), make([]byte, pongSize)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func pingPong(c *net.TCPConn, req, resp []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	_, err := io.ReadFull(c, resp)
	return err
}

// BenchmarkPingPong compares request/response round trips over loopback
// TCP (path=tcp) with the sockmap fast path (path=sockmap, default
// options), at one connection (latency) and 32 concurrent connections
// (throughput; ns/op is wall time per round trip across all connections).
// On a shared machine, interleave the runs so that noise hits both paths:
//
//	go test -c -o bpf.test ./bpf/
//	for i in 1 2 3 4 5 6 7 8; do ./bpf.test -test.run '^$' -test.bench PingPong >> new.txt; done
//	benchstat -col /path new.txt
func BenchmarkPingPong(b *testing.B) {
	for _, conns := range []int{1, 32} {
		for _, path := range []string{"tcp", "sockmap"} {
			b.Run(fmt.Sprintf("conns=%d/path=%s", conns, path), func(b *testing.B) {
				ln, port := listen(b)
				pingPongServer(b, ln)
				var a *Accel
				if path == "sockmap" {
					a = loadAccel(b, Options{})
					if err := a.AddPort(port); err != nil {
						b.Fatal(err)
					}
				}
				var before Counters
				if a != nil {
					before, _ = a.Counters()
				}
				b.SetBytes(pingSize + pongSize)
				if conns == 1 {
					c := dial(b, port)
					req, resp := make([]byte, pingSize), make([]byte, pongSize)
					for b.Loop() {
						if err := pingPong(c, req, resp); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					// RunParallel starts parallelism × GOMAXPROCS goroutines,
					// each with its own connection: exactly conns when
					// GOMAXPROCS divides it, as on the 2-core machines here.
					procs := runtime.GOMAXPROCS(0)
					b.SetParallelism((conns + procs - 1) / procs)
					b.RunParallel(func(pb *testing.PB) {
						c, err := net.DialTCP("tcp4", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
						if err != nil {
							b.Error(err)
							return
						}
						defer c.Close()
						req, resp := make([]byte, pingSize), make([]byte, pongSize)
						for pb.Next() {
							if err := pingPong(c, req, resp); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				if a != nil {
					after, err := a.Counters()
					if err != nil {
						b.Fatal(err)
					}
					if after.Redirected == before.Redirected {
						b.Fatalf("path=%s redirected nothing: %+v", path, after)
					}
				}
			})
		}
	}
}
