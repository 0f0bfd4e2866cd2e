package bpf

import (
	"bufio"
	"fmt"
	"io"
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

// slowDownloadBound is the most a download to a slow reader may leave
// queued in the kernel with the default Direction (ToBackend): what TCP
// flow control allows on loopback (send buffer up to tcp_wmem's 4 MiB
// default maximum plus a receive window kept small by the slow reader),
// with headroom.
const slowDownloadBound = 16 << 20

// TestSlowDownloadIsBounded: with the default Direction, a backend
// streaming to a reader that falls behind (loopgate writing to a slow
// client) is throttled by TCP flow control exactly as without
// acceleration, so the bytes queued in the kernel stay bounded and arrive
// intact. With BothWays the whole stream would be queued
// (TestSlowReaderManual measures it).
func TestSlowDownloadIsBounded(t *testing.T) {
	a := loadAccel(t, Options{})
	client, backend := connectedPair(t, a)
	const total = 64 << 20
	rep := slowReader(t, backend, client, total, 4<<20, 1500*time.Millisecond)
	c := counters(t, a)
	t.Logf("slow download, direction=%s: %v; counters %+v", a.Direction(), rep, c)
	if rep.maxInFlight > slowDownloadBound {
		t.Errorf("%.1f MiB queued in the kernel for a slow reader, want at most %d MiB", mib(rep.maxInFlight), slowDownloadBound>>20)
	}
	if c.PassedBytes != total || c.RedirectedBytes != 0 {
		t.Errorf("download bytes redirected %d, passed %d; want all %d passed", c.RedirectedBytes, c.PassedBytes, total)
	}
}

// TestSlowReaderManual measures the backpressure hazard (issue 6): a
// large stream read at 4 MiB/s for 10 s (then drained at full speed and
// checked byte by byte), over plain TCP and over the sockmap in each
// Direction, downloads (backend to client end) and uploads (client end to
// backend). It reports the most the kernel held: bytes written but not
// yet read, the receiver's rmem_alloc (ss -tm "skmem r"), SIOCINQ, and the
// host's TCP memory. It takes about a minute and, for redirected streams,
// up to LOOPGATE_BPF_SLOWREADER_MIB (default 1024) of host TCP memory, so
// it runs only when asked:
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
		name   string
		accel  bool
		dir    Direction
		upload bool
	}{
		{"path=tcp/stream=download", false, ToBackend, false},
		{"path=sockmap/direction=to-backend/stream=download", true, ToBackend, false},
		{"path=sockmap/direction=both/stream=download", true, BothWays, false},
		{"path=tcp/stream=upload", false, ToBackend, true},
		{"path=sockmap/direction=to-backend/stream=upload", true, ToBackend, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var client, backend *net.TCPConn
			if tc.accel {
				client, backend = connectedPair(t, loadAccel(t, Options{Direction: tc.dir}))
			} else {
				ln, port := listen(t)
				client = dial(t, port)
				backend = acceptOne(t, ln)
			}
			sender, receiver := backend, client
			if tc.upload {
				sender, receiver = client, backend
			}
			t.Logf("%s: %v", tc.name, slowReader(t, sender, receiver, total, rate, slowFor))
		})
	}
}
