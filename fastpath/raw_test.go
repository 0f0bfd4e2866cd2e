// Raw HTTP/1.1 on both sides of loopgate: scripted backends that see the
// bytes loopgate sends, and client connections that send bytes as written.

package fastpath

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawBackend serves each connection with serve, on 127.0.0.1.
func rawBackend(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("raw backend connections did not end")
		}
	})
	return ln.Addr().String()
}

// rawRequest is one request as a raw backend received it.
type rawRequest struct {
	head string // request line and header lines, CRLF-separated, without the blank line
	body []byte
}

func (r rawRequest) lines() []string { return strings.Split(r.head, "\r\n") }

// values returns the values of every header line called name (any case).
func (r rawRequest) values(name string) []string {
	var out []string
	for _, l := range r.lines()[1:] {
		if i := strings.IndexByte(l, ':'); i > 0 && strings.EqualFold(l[:i], name) {
			out = append(out, strings.TrimSpace(l[i+1:]))
		}
	}
	return out
}

// readRawRequest reads one request (head and body) off br.
func readRawRequest(br *bufio.Reader) (rawRequest, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return rawRequest{}, err
		}
		if line == "\r\n" {
			break
		}
		head.WriteString(line)
	}
	r := rawRequest{head: strings.TrimSuffix(head.String(), "\r\n")}
	if cl := r.values("Content-Length"); len(cl) == 1 {
		n, err := strconv.Atoi(cl[0])
		if err != nil {
			return r, err
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return r, err
		}
	} else if te := r.values("Transfer-Encoding"); len(te) == 1 {
		b, err := io.ReadAll(httputil.NewChunkedReader(br))
		if err != nil {
			return r, err
		}
		// the chunked reader stops after the last chunk; eat the final CRLF
		if _, err := br.ReadString('\n'); err != nil {
			return r, err
		}
		r.body = b
	}
	return r, nil
}

// capturingBackend answers every request with response and sends what it
// received on the returned channel.
func capturingBackend(t *testing.T, response string) (string, chan rawRequest) {
	ch := make(chan rawRequest, 64)
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readRawRequest(br)
			if err != nil {
				return
			}
			ch <- r
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	})
	return addr, ch
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting")
	}
	var zero T
	return zero
}

// rawConn is a client connection that sends raw bytes and reads responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// response reads one response and its whole body.
func (r *rawConn) response(method string) (*http.Response, []byte) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading response body: %v", err)
	}
	return resp, body
}

func (r *rawConn) roundTrip(req string) (*http.Response, []byte) {
	r.t.Helper()
	r.send(req)
	method, _, _ := strings.Cut(req, " ")
	return r.response(method)
}

// closedByPeer reports whether the connection gets EOF (or a reset) within d.
func (r *rawConn) closedByPeer(d time.Duration) bool {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	_, err := r.br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func get(host, path string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// refusedAddr returns a loopback address whose connects are refused for the
// rest of the test: the port stays bound (so no other test's listener can
// take it, as it could after a closed listener) but is never listened on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}
