package bpf

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBulk streams a large body the way loopgate relays a download:
// a backend writes it in 1 MiB writes over a loopback connection to a
// registered port; the proxy end reads it in 64 KiB reads and writes each
// to a client connection (not accelerated) whose reader discards it. The
// client is the slowest link, as it is for a real download, so the proxy's
// receive queue fills. path=tcp is plain loopback and path=sockmap the
// default options, both over one connection; path=sockmap-release
// releases (Accel.Release) a fresh connection for each body, as loopgate
// does for bodies larger than QueueLimit. Besides MB/s it reports the CPU
// (user+system of the whole process) per MiB. Interleave runs on a shared
// machine:
//
//	go test -c -o bpf.test ./bpf/
//	for i in 1 2 3 4 5 6; do ./bpf.test -test.run '^$' -test.bench Bulk >> bulk.txt; done
//	benchstat -col /path bulk.txt
func BenchmarkBulk(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		for _, path := range []string{"tcp", "sockmap", "sockmap-release"} {
			if path == "sockmap-release" && size <= DefaultQueueLimit {
				continue // loopgate releases only bodies its reader can fall QueueLimit behind
			}
			b.Run(fmt.Sprintf("size=%dMiB/path=%s", size>>20, path), func(b *testing.B) {
				ln, port := listen(b)
				var a *Accel
				switch path {
				case "sockmap", "sockmap-release":
					a = loadAccel(b, Options{})
				}
				if a != nil {
					if err := a.AddPort(port); err != nil {
						b.Fatal(err)
					}
				}
				bulkServer(b, ln, size)
				sinkLn, sinkPort := listen(b)
				go func() {
					c, err := sinkLn.AcceptTCP()
					if err != nil {
						return
					}
					defer c.Close()
					io.CopyBuffer(io.Discard, plainConn{Reader: c}, make([]byte, 64<<10))
				}()
				client := dial(b, sinkPort)
				up := dial(b, port)
				buf := make([]byte, 64<<10)
				b.SetBytes(int64(size))
				var before Counters
				if a != nil {
					before, _ = a.Counters()
				}
				cpu0 := cpuTime()
				for b.Loop() {
					if path == "sockmap-release" {
						// As loopgate does it: the connection is released
						// for one body and closed after it, so every body
						// starts on a fresh, fully accelerated connection.
						up.Close()
						up = dial(b, port)
						if err := a.Release(netip.MustParseAddrPort(up.LocalAddr().String()), netip.MustParseAddrPort(up.RemoteAddr().String())); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := up.Write([]byte{1}); err != nil {
						b.Fatal(err)
					}
					for left := size; left > 0; {
						n, err := up.Read(buf[:min(len(buf), left)])
						if err != nil {
							b.Fatal(err)
						}
						if _, err := client.Write(buf[:n]); err != nil {
							b.Fatal(err)
						}
						left -= n
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/(float64(b.N)*float64(size)/(1<<20)), "cpu-ms/MiB")
				if a != nil {
					after, _ := a.Counters()
					b.ReportMetric(float64(after.RedirectedBytes-before.RedirectedBytes)/float64(b.N)/float64(size), "redirected/op")
				}
			})
		}
	}
}

// bulkServer answers every byte it reads with size bytes, written 1 MiB at
// a time.
func bulkServer(b *testing.B, ln *net.TCPListener, size int) {
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, body := make([]byte, 1), make([]byte, 1<<20)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					for left := size; left > 0; left -= len(body) {
						if _, err := c.Write(body[:min(len(body), left)]); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
