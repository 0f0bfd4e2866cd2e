package bpf

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flowReport is what a slow-reader run observed.
type flowReport struct {
	written, read    int64
	maxInFlight      int64 // written by the sender, not yet read by the receiver
	maxHostTCPMem    int64 // /proc/net/sockstat "TCP: mem", bytes, whole host
	maxReaderRmem    int64 // SO_MEMINFO rmem_alloc of the receiving socket
	maxReaderInq     int64 // SIOCINQ (FIONREAD) of the receiving socket
	baselineHostTCPB int64
}

func (r flowReport) String() string {
	return fmt.Sprintf("written %d MiB, read %d MiB; max in flight %.1f MiB; receiver rmem_alloc max %.1f MiB, SIOCINQ max %.1f MiB; host TCP mem max %.1f MiB (%.1f MiB before)",
		r.written>>20, r.read>>20, mib(r.maxInFlight), mib(r.maxReaderRmem), mib(r.maxReaderInq), mib(r.maxHostTCPMem), mib(r.baselineHostTCPB))
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// pattern is the byte at stream offset off; the reader checks every byte.
func pattern(off int64) byte { return byte(off ^ off>>8 ^ off>>16) }

// slowReader streams total bytes from sender to receiver, reading at rate
// bytes/s for slowFor, then drains the rest at full speed while checking
// every byte. Every 50 ms it samples how much is queued in the kernel.
func slowReader(t *testing.T, sender, receiver *net.TCPConn, total, rate int64, slowFor time.Duration) flowReport {
	t.Helper()
	var written, read atomic.Int64
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var off int64
		for off < total {
			n := min(int64(len(buf)), total-off)
			for i := range n {
				buf[i] = pattern(off + i)
			}
			if _, err := sender.Write(buf[:n]); err != nil {
				werr <- err
				return
			}
			off += n
			written.Store(off)
		}
		werr <- nil
	}()

	rep := flowReport{baselineHostTCPB: hostTCPMem(t)}
	sample := func() {
		inFlight := written.Load() - read.Load()
		rep.maxInFlight = max(rep.maxInFlight, inFlight)
		rep.maxHostTCPMem = max(rep.maxHostTCPMem, hostTCPMem(t))
		rmem, inq := sockMem(t, receiver)
		rep.maxReaderRmem = max(rep.maxReaderRmem, rmem)
		rep.maxReaderInq = max(rep.maxReaderInq, inq)
	}

	buf := make([]byte, 256<<10)
	var off int64
	check := func(p []byte) {
		for i, b := range p {
			if b != pattern(off+int64(i)) {
				t.Fatalf("byte %d of the stream is %#x, want %#x", off+int64(i), b, pattern(off+int64(i)))
			}
		}
		off += int64(len(p))
		read.Store(off)
	}
	receiver.SetReadDeadline(time.Now().Add(slowFor + 2*time.Minute))
	tick := 10 * time.Millisecond
	perTick := rate * int64(tick) / int64(time.Second)
	lastSample := time.Now()
	for end := time.Now().Add(slowFor); time.Now().Before(end) && off < total; {
		n, err := io.ReadFull(receiver, buf[:min(perTick, total-off)])
		if err != nil {
			t.Fatalf("slow read at %d: %v", off, err)
		}
		check(buf[:n])
		if time.Since(lastSample) >= 50*time.Millisecond {
			sample()
			lastSample = time.Now()
		}
		time.Sleep(tick)
	}
	sample()
	for off < total {
		n, err := receiver.Read(buf[:min(int64(len(buf)), total-off)])
		if err != nil {
			t.Fatalf("draining at %d of %d: %v", off, total, err)
		}
		check(buf[:n])
	}
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("sender: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sender did not finish after the receiver read everything")
	}
	rep.written, rep.read = written.Load(), read.Load()
	return rep
}

// hostTCPMem returns the TCP memory charged on the whole host, in bytes.
func hostTCPMem(t *testing.T) int64 {
	f, err := os.Open("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(fields); i += 2 {
			if fields[i] == "mem" {
				pages, _ := strconv.ParseInt(fields[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	t.Fatal("no TCP mem in /proc/net/sockstat")
	return 0
}

// sockMem returns SO_MEMINFO's rmem_alloc and SIOCINQ for c.
func sockMem(t *testing.T, c *net.TCPConn) (rmem, inq int64) {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var meminfo [unix.SK_MEMINFO_VARS]uint32
	var serr error
	rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(meminfo))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO, uintptr(unsafe.Pointer(&meminfo[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
			return
		}
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil {
			serr = err
			return
		}
		inq = int64(n)
	})
	if serr != nil {
		t.Fatalf("reading socket memory: %v", serr)
	}
	return int64(meminfo[unix.SK_MEMINFO_RMEM_ALLOC]), inq
}

// slowReaderBound is the most a stream to a slow reader may leave queued
// in the kernel with the default QueueLimit (4 MiB): the limit, plus what
// TCP flow control allows after the fallback (send buffer up to tcp_wmem's
// 4 MiB default maximum, a small receive window), with headroom.
const slowReaderBound = 16 << 20

// TestSlowReaderIsBounded: a writer streaming to a reader that falls
// behind is redirected until the reader holds QueueLimit unread bytes,
// then falls back to TCP, whose flow control throttles it; the bytes
// arrive intact across the switch and what the kernel queues stays
// bounded. Without the fallback the writer would queue the whole stream
// (TestSlowReaderManual shows it with QueueLimit set very high).
func TestSlowReaderIsBounded(t *testing.T) {
	for _, dir := range []string{"download", "upload"} {
		t.Run("stream="+dir, func(t *testing.T) {
			a := loadAccel(t, Options{})
			client, backend := connectedPair(t, a)
			sender, receiver := backend, client
			if dir == "upload" {
				sender, receiver = client, backend
			}
			const total = 64 << 20
			rep := slowReader(t, sender, receiver, total, 4<<20, 1500*time.Millisecond)
			c := counters(t, a)
			t.Logf("slow %s: %v; counters %+v", dir, rep, c)
			if rep.maxInFlight > slowReaderBound {
				t.Errorf("%.1f MiB queued in the kernel for a slow reader, want at most %d MiB", mib(rep.maxInFlight), slowReaderBound>>20)
			}
			if c.Fallbacks != 1 || c.RedirectedBytes < DefaultQueueLimit || c.RedirectedBytes+c.PassedBytes != total {
				t.Errorf("want one fallback after at least %d redirected bytes and the rest passed: %+v", DefaultQueueLimit, c)
			}
		})
	}
}

// TestSlowReaderManual measures the backpressure hazard (issue 6): a
// large stream read at 4 MiB/s for 10 s, over plain TCP, over the sockmap
// with the default QueueLimit, and over the sockmap with the limit out of
// reach (what redirection does on its own), reporting what the kernel
// queues. It takes about a minute and up to LOOPGATE_BPF_SLOWREADER_MIB
// (default 1024) of host TCP memory, so it runs only when asked:
//
//	LOOPGATE_BPF_SLOWREADER=1 go test -run TestSlowReaderManual -v -timeout 30m ./bpf/
func TestSlowReaderManual(t *testing.T) {
	if os.Getenv("LOOPGATE_BPF_SLOWREADER") != "1" {
		t.Skip("manual measurement; set LOOPGATE_BPF_SLOWREADER=1 to run")
	}
	total := int64(1 << 30)
	if s := os.Getenv("LOOPGATE_BPF_SLOWREADER_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("LOOPGATE_BPF_SLOWREADER_MIB=%q: %v", s, err)
		}
		total = n << 20
	}
	const slowFor, rate = 10 * time.Second, 4 << 20
	for _, tc := range []struct {
		name       string
		accel      bool
		queueLimit int
	}{
		{"path=tcp", false, 0},
		{"path=sockmap/limit=default", true, 0},
		{"path=sockmap/limit=none", true, math.MaxInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var client, backend *net.TCPConn
			if tc.accel {
				client, backend = connectedPair(t, loadAccel(t, Options{QueueLimit: tc.queueLimit}))
			} else {
				ln, port := listen(t)
				client = dial(t, port)
				backend = acceptOne(t, ln)
			}
			t.Logf("%s: %v", tc.name, slowReader(t, backend, client, total, rate, slowFor))
		})
	}
}
