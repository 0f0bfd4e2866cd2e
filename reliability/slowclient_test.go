package reliability

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestSlowloris holds 200 connections that send a request head one byte a
// second. loopgate's header timeout (--header-read-timeout 3s; the
// default 10 s with LOOPGATE_LONG=1) must cut every one of them, while
// four ordinary clients keep being served; their latency is measured and
// bounded generously.
func TestSlowloris(t *testing.T) {
	const attackers = 200
	headerTimeout := 3 * time.Second
	if long() {
		headerTimeout = 10 * time.Second
	}
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--header-read-timeout", headerTimeout.String(), dir}})
	if code, _, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 5*time.Second)...)

	cut := make(chan time.Duration, attackers)
	for range attackers {
		c := dialRaw(t, l.Front, 30*time.Second)
		go func() {
			start := time.Now()
			head := "GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: " // never finished
			for i := 0; ; i++ {
				b := []byte{'a'}
				if i < len(head) {
					b[0] = head[i]
				}
				if _, err := c.Write(b); err != nil {
					break
				}
				// Stop writing as soon as loopgate answers or closes.
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := c.Read(make([]byte, 512)); err == nil || !isTimeout(err) {
					break
				}
				if time.Since(start) > 25*time.Second {
					break
				}
			}
			cut <- time.Since(start)
		}()
	}

	lat := normalLoad(t, l, 4, headerTimeout+time.Second)
	var cuts []time.Duration
	for range attackers {
		select {
		case d := <-cut:
			cuts = append(cuts, d)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d slowloris connections were cut", len(cuts), attackers)
		}
	}
	slices.Sort(cuts)
	t.Logf("%d slowloris connections cut after %v..%v (header timeout %v); ordinary clients meanwhile: %v",
		attackers, cuts[0].Round(time.Millisecond), cuts[len(cuts)-1].Round(time.Millisecond), headerTimeout, lat)
	if cuts[len(cuts)-1] > headerTimeout+3*time.Second {
		t.Errorf("a slowloris connection lasted %v, header timeout %v", cuts[len(cuts)-1], headerTimeout)
	}
	if cuts[0] < headerTimeout-time.Second {
		t.Errorf("a slowloris connection was cut after %v, before the header timeout", cuts[0])
	}
	lat.check(t)
}

// TestSlowReader requests 64 MiB and reads none of it: once the kernel
// buffers are full, loopgate's writes stall and the send timeout
// (--send-timeout 2s; the default 60 s with LOOPGATE_LONG=1) cuts the
// connection, while four ordinary clients keep being served.
func TestSlowReader(t *testing.T) {
	sendTimeout := 2 * time.Second
	if long() {
		sendTimeout = 60 * time.Second
	}
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--send-timeout", sendTimeout.String(), dir}})
	c := dialRaw(t, l.Front, 3*time.Minute)
	if _, err := io.WriteString(c, "GET /big?mb=64 HTTP/1.1\r\nHost: slow\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Read nothing; the kernel buffers fill, then loopgate's writes stall.
	lat := normalLoad(t, l, 4, sendTimeout+3*time.Second)
	// Now drain: the connection must end short of 64 MiB.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	t.Logf("slow reader (send timeout %v) got %d of %d bytes before being cut; ordinary clients meanwhile: %v", sendTimeout, n, 64<<20, lat)
	if n >= 64<<20 {
		t.Errorf("the slow reader got the whole body after %v: not cut", time.Since(start))
	}
	lat.check(t)
}

// latencies are ordinary clients' request latencies during an attack.
type latencies struct {
	d      []time.Duration
	errors int
}

func (l latencies) String() string {
	if len(l.d) == 0 {
		return fmt.Sprintf("no requests, %d errors", l.errors)
	}
	return fmt.Sprintf("%d requests, %d errors, p50 %v p99 %v max %v", len(l.d), l.errors,
		l.d[len(l.d)/2].Round(time.Microsecond), l.d[len(l.d)*99/100].Round(time.Microsecond), l.d[len(l.d)-1].Round(time.Microsecond))
}

// check asserts every ordinary request succeeded in reasonable time: the
// bound is loose on purpose (a shared 2-core machine), the figures are
// in the log.
func (l latencies) check(t *testing.T) {
	t.Helper()
	if l.errors > 0 || len(l.d) < 100 {
		t.Errorf("ordinary clients: %v", l)
	}
	if len(l.d) > 0 && l.d[len(l.d)-1] > 2*time.Second {
		t.Errorf("an ordinary request took %v", l.d[len(l.d)-1])
	}
}

// normalLoad runs n keep-alive clients doing GET / every 20 ms for dur.
func normalLoad(t *testing.T, l *loopgatetest.Process, n int, dur time.Duration) latencies {
	var mu sync.Mutex
	var out latencies
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for range n {
		c := client(t, 10*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				start := time.Now()
				code, _, err := get(c, l.URL("/"))
				d := time.Since(start)
				mu.Lock()
				if err != nil || code != 200 {
					out.errors++
				} else {
					out.d = append(out.d, d)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	slices.Sort(out.d)
	return out
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
