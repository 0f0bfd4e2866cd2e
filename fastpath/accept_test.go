package fastpath

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// flakyListener fails Accept with err the first n times.
type flakyListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: l.err}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptRidesOutFDExhaustion: EMFILE from accept is retried with a
// backoff, logged once when it starts and once when it ends, and the
// connection waiting in the queue is then accepted. Any other error ends
// Accept as before.
func TestAcceptRidesOutFDExhaustion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var log bytes.Buffer
	fl := &flakyListener{Listener: ln, n: 4, err: syscall.EMFILE}
	l := &limitedListener{Listener: fl, lim: newConnLimiter(1), log: zerolog.New(&log), done: make(chan struct{})}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	got, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	got.Close()
	// 5+10+20+40 ms of backoff.
	if el := time.Since(start); el < 70*time.Millisecond || el > 2*time.Second {
		t.Errorf("recovered after %v, want the backoff (75 ms)", el)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "accept_failing") || !strings.Contains(lines[1], `"failures":4`) {
		t.Errorf("log:\n%s\nwant one accept_failing and one accept_recovered line with failures 4", log.String())
	}

	fl.mu.Lock()
	fl.n, fl.err = 1, syscall.EINVAL
	fl.mu.Unlock()
	if _, err := l.Accept(); err == nil {
		t.Errorf("Accept with EINVAL: no error")
	}
	if len(l.lim.sem) != 0 {
		t.Errorf("a failed Accept kept its connection slot")
	}

	// Closing the listener ends a retry loop at once.
	fl.mu.Lock()
	fl.n, fl.err = 1<<30, syscall.EMFILE
	fl.mu.Unlock()
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if err != net.ErrClosed {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still retrying 2 s after Close")
	}
}

// closingListener closes the limitedListener it serves after each accept,
// as StopAccepting does when it lands between the kernel's accept and the
// connection slot (an upgrade's old process under load).
type closingListener struct {
	net.Listener
	l *limitedListener
}

func (c *closingListener) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.l.Close()
	}
	return conn, err
}

// TestAcceptServesWhatItAccepted: a connection taken from the kernel's
// queue is served even if the listener closed meanwhile: it left the queue
// the next loopgate (an upgrade's) shares, so closing it would reset a
// request that a user sent before anything stopped. It was closed in about
// half of such races (a select between a free slot and the close).
func TestAcceptServesWhatItAccepted(t *testing.T) {
	for i := range 40 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &limitedListener{lim: newConnLimiter(4), log: zerolog.Nop(), done: make(chan struct{})}
		l.Listener = &closingListener{Listener: ln, l: l}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Accept()
		if err != nil {
			c.Close()
			t.Fatalf("race %d: the accepted connection was dropped: %v", i, err)
		}
		got.Close()
		c.Close()
		if _, err := l.Accept(); err == nil {
			t.Fatalf("race %d: Accept after the close: no error", i)
		}
	}
}
