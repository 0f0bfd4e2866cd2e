// TLS handshakes per second, full and resumed from session tickets: a Go
// client making a new TLS 1.3 connection for every request.

package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// handshakeResult is one handshake load run.
type handshakeResult struct {
	Handshakes int64         `json:"handshakes"` // connections that got their answer
	Resumed    int64         `json:"resumed"`    // of those, resumed from a ticket
	Errors     int64         `json:"errors"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// runHandshakes keeps conns clients busy for d, each connecting, making
// the TLS 1.3 handshake (X25519, as OpenSSL clients offer: Go's default
// hybrid X25519MLKEM768 is one nginx and HAProxy with OpenSSL 3.0 cannot
// pick), sending one GET / and reading its 13 B answer, then closing (the
// client closes first, so TIME_WAIT stays on its side, where loopback
// reuses it). With resume, the clients share a session cache, so each
// connection after a client's first resumes from a ticket.
func runHandshakes(addr string, resume bool, conns int, d time.Duration) (handshakeResult, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519}}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4 * conns)
	}
	req := []byte("GET / HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: loopgate-bench\r\n\r\n")
	one := func() (resumed bool, err error) {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return false, err
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Client(nc, cfg)
		if _, err := c.Write(req); err != nil {
			return false, err
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
		if err != nil {
			return false, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || n != 13 {
			return false, fmt.Errorf("answer %s with %d body bytes (%v), want 200 with 13", resp.Status, n, err)
		}
		return c.ConnectionState().DidResume, nil
	}
	var (
		mu  sync.Mutex
		res handshakeResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(d)
	for range conns {
		wg.Go(func() {
			var n, resumed, errs int64
			var first error
			for time.Now().Before(stop) {
				r, err := one()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				n++
				if r {
					resumed++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.Handshakes += n
			res.Resumed += resumed
			res.Errors += errs
			if first != nil && res.FirstError == "" {
				res.FirstError = first.Error()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, nil
}

// handshakeConns is how many connections the handshake client makes at
// once.
const handshakeConns = 8

// measureHandshakes is the TLS handshakes row: full handshakes and
// resumed ones, per second and in proxy CPU per handshake.
func measureHandshakes(c config, ts map[string]*target, loadCPU int) (*table, error) {
	t := &table{title: "TLS 1.3 handshakes, a new connection per request", ref: "nginx",
		targets: c.rowTargets("loopgate", "loopgate-sockmap", "nginx", "haproxy"),
		method: fmt.Sprintf("A Go client on CPU 1 (%d connections at a time, each: TCP connect, TLS 1.3 handshake with X25519, GET / answered 13 B, close) "+
			"for %v after a %v run not counted; ECDSA P-256 certificate; full: no session cache; resumed: one shared session cache, "+
			"so every connection after each client's first resumes from a session ticket (psk_dhe_ke: no certificate, no signature). "+
			"Proxy CPU per handshake includes the one request. The client needs about as much CPU per full handshake as the server "+
			"(it checks the server's signature), so the rates can be the client's limit: compare CPU per handshake.", handshakeConns, c.duration, c.warmup),
		metrics: []metric{
			{key: "full", head: "full handshakes/s", format: "%.0f", chart: "TLS 1.3 full handshakes/s (higher is better)"},
			{key: "fullcpu", head: "proxy CPU µs/full handshake", format: "%.0f", chart: "TLS 1.3 proxy CPU µs per full handshake (lower is better)"},
			{key: "resumed", head: "resumed handshakes/s", format: "%.0f", chart: "TLS 1.3 resumed handshakes/s (higher is better)"},
			{key: "rescpu", head: "proxy CPU µs/resumed handshake", format: "%.0f", chart: "TLS 1.3 proxy CPU µs per resumed handshake (lower is better)"},
			{key: "share", head: "% resumed", format: "%.1f", noRatio: true},
			{key: "errors", head: "errors", format: "%.0f", noRatio: true},
		}}
	err := measureTable(c, ts, t, func(name string) (map[string]float64, error) {
		tg := ts[name]
		v := map[string]float64{}
		for _, resume := range []bool{false, true} {
			args := []string{"handshake", "-addr", tg.tlsAddr, "-conns", strconv.Itoa(handshakeConns), "-resume=" + strconv.FormatBool(resume)}
			var r handshakeResult
			cpu, _, err := measureLoadgen(c, tg.pids(), 0, loadCPU, &r, args)
			if err != nil {
				return nil, err
			}
			if r.Handshakes == 0 {
				return nil, fmt.Errorf("no handshake completed: %s", r.FirstError)
			}
			if r.Errors > 0 {
				fmt.Fprintf(os.Stderr, "compare: %s handshakes (resume %v): %d errors, first: %s\n", name, resume, r.Errors, r.FirstError)
			}
			rate, perHS := float64(r.Handshakes)/r.Elapsed.Seconds(), float64(cpu.Total().Nanoseconds())/1e3/float64(r.Handshakes)
			if resume {
				v["resumed"], v["rescpu"] = rate, perHS
				v["share"] = 100 * float64(r.Resumed) / float64(r.Handshakes)
			} else {
				v["full"], v["fullcpu"] = rate, perHS
			}
			v["errors"] += float64(r.Errors)
		}
		return v, nil
	})
	return t, err
}
