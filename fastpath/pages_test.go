package fastpath

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
)

// headBackend reads each request head and then runs serve on the
// connection (see rawBackend).
func headBackend(t *testing.T, serve func(c *net.TCPConn)) string {
	return rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		serve(c.(*net.TCPConn))
	})
}

// TestBadGatewayNamesTheCause: the 502.3 page keeps the reference's title
// and sentence and adds what loopgate knows of the cause; the log line
// names it too.
func TestBadGatewayNamesTheCause(t *testing.T) {
	const start = "<!DOCTYPE html>\r\n<html lang=\"en-US\">\r\n<head><meta charset=\"utf-8\" /><title> HTTP Error 502.3 - Bad Gateway </title></head>\r\n<body>\r\n" +
		"<h1> HTTP Error 502.3 - Bad Gateway </h1>\r\n<p> There was a connection error while trying to route the request. </p>\r\n"
	const end = "</body>\r\n</html>\r\n"
	cases := []struct {
		name    string
		backend func(t *testing.T) string
		timeout time.Duration
		cause   string // the page's last paragraph
		code    string // the log's cause field
	}{
		{"refused", refusedAddr, 0,
			"The application refused the connection: it is not listening on its port.", "connection_refused"},
		// Before the first byte of a response fasthttp reports a reset as
		// an end of file, so it reads as a close.
		{"reset before answering", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) { c.SetLinger(0) })
		}, 0, "The application closed the connection without answering.", "closed_without_response"},
		{"closed", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) {})
		}, 0, "The application closed the connection without answering.", "closed_without_response"},
		{"cut", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) { c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Ty")) })
		}, 0, "The application closed the connection in the middle of its response.", "response_cut"},
		{"invalid", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) { c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n\r\n")) })
		}, 0, "The application's response was not valid HTTP.", "invalid_response"},
		{"too large", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) {
				c.Write([]byte("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\n\r\n"))
			})
		}, 0, "The application's response headers were too large.", "response_head_too_large"},
		{"requestTimeout", func(t *testing.T) string {
			return headBackend(t, func(c *net.TCPConn) { time.Sleep(3 * time.Second) })
		}, time.Second, "The application sent nothing for requestTimeout of 00:00:01, which expired.", "request_timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{}, "/")
			h.backend("/", c.backend(t))
			if c.timeout > 0 {
				h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = c.timeout })
			}
			r, body := dialRaw(t, h.addr).roundTrip(get("a", "/"))
			if want := start + "<p> " + c.cause + " </p>\r\n" + end; r.StatusCode != 502 || string(body) != want {
				t.Errorf("%d %q\nwant the page with %q", r.StatusCode, body, c.cause)
			}
			if !strings.Contains(h.logs.String(), `"cause":"`+c.code+`"`) {
				t.Errorf("log lacks cause %s:\n%s", c.code, h.logs.String())
			}
		})
	}
	if got := string(page502_3); got != start+end {
		t.Errorf("the page without a cause: %q", got)
	}
	if got := string(page502_3Timeout(26*time.Hour + 3*time.Minute + 4*time.Second)); !strings.Contains(got, "requestTimeout of 26:03:04,") {
		t.Errorf("long timeout: %q", got)
	}
}

// TestGatewayCause covers the causes the end-to-end cases cannot produce
// reliably (a reset after the first byte races with reading it).
func TestGatewayCause(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("reading response head: %w", err) }
	for _, c := range []struct {
		st   stage
		err  error
		want badGateway
	}{
		{stageBadResponse, wrap(syscall.ECONNRESET), gatewayReset},
		{stageSend, fmt.Errorf("sending request: %w", syscall.EPIPE), gatewayReset},
		{stageConnect, fmt.Errorf("connecting: %w", fasthttp.ErrDialTimeout), gatewayConnect},
		{stageRedial, fmt.Errorf("connecting: %w", syscall.ECONNREFUSED), gatewayRefused},
		{stageSend, fmt.Errorf("sending request: %w", os.ErrDeadlineExceeded), gatewayTimeout},
		{stageBadResponse, wrap(errInterim), gatewayInvalid},
		{stageBadResponse, errBadSwitch, gatewayInvalid},
		{stageNone, errNoUpstream, gatewayUnknown},
	} {
		if got := gatewayCause(c.st, c.err); got != c.want {
			t.Errorf("gatewayCause(%d, %v) = %v, want %v", c.st, c.err, got, c.want)
		}
	}
	if got := string(gatewayPages[gatewayReset]); !strings.Contains(got, "<p> The application reset the connection. </p>\r\n</body>") {
		t.Errorf("reset page %q", got)
	}
}
