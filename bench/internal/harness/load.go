// Package harness is what the end-to-end benchmarks and the comparison
// harness share: a keep-alive HTTP/1.1 load generator with per-request
// timestamps, CPU accounting from /proc, CPU pinning, and starting the
// benchmark backend, loopgate, nginx and HAProxy as child processes on
// loopback. It is test tooling; nothing in loopgate uses it.
package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrResponse is wrapped by Conn.Do when an answer is not the expected one.
var ErrResponse = errors.New("unexpected response")

// GET returns a keep-alive GET request for target with Host host and the
// given extra header lines ("Name: value").
func GET(host, target string, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loopgate-bench\r\nAccept: */*\r\n", target, host)
	for _, h := range extra {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// Conn is one keep-alive client connection sending the same request over
// and over. It allocates nothing per request. Not safe for concurrent use.
type Conn struct {
	c        net.Conn
	br       *bufio.Reader
	req      []byte
	wantBody int
	resp     fasthttp.Response
}

// Dial connects to addr. Every answer to req must be 200 with a body of
// wantBody bytes.
func Dial(addr string, req []byte, wantBody int) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return &Conn{c: c, br: bufio.NewReaderSize(c, 32<<10), req: req, wantBody: wantBody}, nil
}

// Do sends the request and reads the whole answer, within 10 s.
func (c *Conn) Do() error {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(c.req); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	if err := c.resp.Read(c.br); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if c.resp.StatusCode() != fasthttp.StatusOK || len(c.resp.Body()) != c.wantBody {
		return fmt.Errorf("%w: status %d, %d body bytes (want 200, %d)", ErrResponse, c.resp.StatusCode(), len(c.resp.Body()), c.wantBody)
	}
	return nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Latencies collects request durations; Add is not safe for concurrent
// use, Merge is.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Merge adds another goroutine's durations.
func (l *Latencies) Merge(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

// Percentile returns the q-quantile (0 < q <= 1) by nearest rank, or 0
// when nothing was recorded. It sorts the durations first.
func (l *Latencies) Percentile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return percentile(l.d, q)
}

// Len returns how many durations were recorded.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	i := int(q*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// LoadOptions describes one closed-loop load run.
type LoadOptions struct {
	Addr     string        // host:port to connect to
	Request  []byte        // the request sent on every connection
	WantBody int           // expected response body length, in bytes
	Conns    int           // concurrent keep-alive connections, each sending back to back
	Duration time.Duration // how long to send
}

// LoadResult is what a load run measured.
type LoadResult struct {
	Requests int64         `json:"requests"` // answered as expected
	Errors   int64         `json:"errors"`   // failed requests (each also costs its connection)
	Elapsed  time.Duration `json:"elapsed_ns"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	// FirstError describes the first failure, "" when there was none.
	FirstError string `json:"first_error,omitempty"`
}

// RPS returns answered requests per second.
func (r LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// RunLoad keeps o.Conns connections busy for o.Duration, each sending the
// next request when the previous answer is complete (closed loop), and
// times every request with the monotonic clock. A failed request is
// counted, its connection closed and dialed again. It fails only when no
// connection can be made at the start.
func RunLoad(o LoadOptions) (LoadResult, error) {
	conns := make([]*Conn, o.Conns)
	for i := range conns {
		c, err := Dial(o.Addr, o.Request, o.WantBody)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return LoadResult{}, err
		}
		conns[i] = c
	}
	var (
		lat     Latencies
		mu      sync.Mutex
		res     LoadResult
		wg      sync.WaitGroup
		start   = time.Now()
		stopped = start.Add(o.Duration)
	)
	for _, c := range conns {
		wg.Go(func() {
			d := make([]time.Duration, 0, 1<<14)
			var n, errs int64
			var first error
			fail := func(err error) {
				errs++
				if first == nil {
					first = err
				}
			}
			for {
				t0 := time.Now()
				if !t0.Before(stopped) {
					break
				}
				if c == nil {
					var err error
					if c, err = Dial(o.Addr, o.Request, o.WantBody); err != nil {
						fail(err)
						time.Sleep(10 * time.Millisecond)
					}
					continue // the dial is not part of the next request's time
				}
				if err := c.Do(); err != nil {
					fail(err)
					c.Close()
					c = nil
					continue
				}
				d = append(d, time.Since(t0))
				n++
			}
			if c != nil {
				c.Close()
			}
			lat.Merge(d)
			mu.Lock()
			res.Requests += n
			res.Errors += errs
			if first != nil && res.FirstError == "" {
				res.FirstError = first.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.P50, res.P90, res.P99 = lat.Percentile(0.50), lat.Percentile(0.90), lat.Percentile(0.99)
	return res, nil
}
