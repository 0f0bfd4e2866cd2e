package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trailerEchoNode is a Node.js app that answers each request, once its body
// ended, with what it read: the body's length, its trailer section (names
// lowercased, name=value sorted, ';'-joined) and the pairing token in the
// head. A body cut short never ends, so it never answers one.
const trailerEchoNode = `
const http = require("http");
const s = http.createServer((req, res) => {
  let n = 0;
  req.on("data", (c) => { n += c.length; });
  req.on("error", () => {});
  req.on("end", () => {
    const t = [];
    for (let i = 0; i < req.rawTrailers.length; i += 2)
      t.push(req.rawTrailers[i].toLowerCase() + "=" + req.rawTrailers[i + 1]);
    t.sort();
    res.setHeader("Seen-Bytes", String(n));
    res.setHeader("Seen-Trailers", t.join(";"));
    res.setHeader("Seen-Token", req.headers["ms-aspnetcore-token"] || "");
    res.setHeader("Seen-Head-Checksum", req.headers["x-checksum"] || "");
    res.end("ok");
  });
});
s.listen(0, "127.0.0.1", () => console.log(s.address().port));
`

// trailerEchoGo is trailerEchoNode in Go's net/http, for HTTP/1.1 and for
// h2c. Every head X-Checksum is reported, so that a trailer value taken
// into the head shows.
func trailerEchoGo(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		panic(http.ErrAbortHandler) // a cut body: no answer, as Node's
	}
	var t []string
	for k, vs := range r.Trailer {
		for _, v := range vs {
			t = append(t, strings.ToLower(k)+"="+v)
		}
	}
	sort.Strings(t)
	w.Header().Set("Seen-Bytes", strconv.FormatInt(n, 10))
	w.Header().Set("Seen-Trailers", strings.Join(t, ";"))
	w.Header().Set("Seen-Token", r.Header.Get("MS-ASPNETCORE-TOKEN"))
	w.Header().Set("Seen-Head-Checksum", strings.Join(r.Header.Values("X-Checksum"), ","))
	_, _ = io.WriteString(w, "ok")
}

// trailerEchoApps starts the HTTP/1.1 apps the request trailer tests run
// against: Go's net/http, and Node's http module when node is on PATH.
// Each is returned by name with its address.
func trailerEchoApps(t *testing.T) map[string]string {
	t.Helper()
	go1 := httptest.NewServer(http.HandlerFunc(trailerEchoGo))
	t.Cleanup(go1.Close)
	apps := map[string]string{"net/http": strings.TrimPrefix(go1.URL, "http://")}
	if addr, ok := startNodeApp(t, trailerEchoNode); ok {
		apps["node"] = addr
	}
	return apps
}

// startNodeApp runs script with node, which prints the port it listens on
// as its first line, and returns the app's address; ok is false when node
// is not on PATH (a failure with LOOPGATE_REQUIRE_SUITES=1). The app is
// killed when the test ends.
func startNodeApp(t *testing.T, script string) (addr string, ok bool) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("LOOPGATE_REQUIRE_SUITES") == "1" {
			t.Fatal("node is not on PATH (make suite-deps installs it; LOOPGATE_REQUIRE_SUITES=1)")
		}
		t.Log("node is not on PATH: the Node.js app is left out")
		return "", false
	}
	cmd := exec.Command(node, "-e", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if _, err := strconv.Atoi(p); err != nil {
			t.Fatalf("node printed %q, not its port", p)
		}
		return "127.0.0.1:" + p, true
	case <-time.After(20 * time.Second):
		t.Fatal("node did not print its port within 20 s")
	}
	return "", false
}

// TestRequestTrailersToHTTP1App: a client's request trailers reach an
// HTTP/1.1 app in the chunked body's trailer section, by
// requestTrailerKept: kept whether announced or not, with the pairing
// token, hop-by-hop fields and fields that may not be trailers dropped;
// a trailer that frames or routes fails the body, which the app then never
// sees complete. Against Go's net/http and Node's http module.
func TestRequestTrailersToHTTP1App(t *testing.T) {
	for name, addr := range trailerEchoApps(t) {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{}, "/")
			b := h.backend("/", addr)
			raw := func(t *testing.T, head, body, trailer string) *http.Response {
				t.Helper()
				c, err := net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n%s\r\n", head)
				for len(body) > 0 {
					n := min(len(body), 16<<10)
					fmt.Fprintf(c, "%x\r\n%s\r\n", n, body[:n])
					body = body[n:]
				}
				fmt.Fprintf(c, "0\r\n%s\r\n", trailer)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return nil
				}
				resp.Body.Close()
				return resp
			}
			const kept = "x-checksum=abc;x-unannounced=1"
			for _, tc := range []struct{ name, head, body string }{
				{"announced and not", "Trailer: X-Checksum, Cache-Control\r\nX-Checksum: head\r\nConnection: X-Hop\r\n", "hello"},
				{"Connection: close", "Trailer: X-Checksum\r\nX-Checksum: head\r\nConnection: close, X-Hop\r\n", "hello"},
				{"64 KiB in chunks", "X-Checksum: head\r\nConnection: X-Hop\r\nCookie: a=1\r\nUser-Agent: t\r\n", strings.Repeat("t", 64<<10)},
			} {
				resp := raw(t, tc.head, tc.body,
					"X-Checksum: abc\r\nX-Unannounced: 1\r\nMS-ASPNETCORE-TOKEN: forged\r\nCache-Control: no-store\r\nX-Hop: 1\r\n")
				if resp == nil || resp.StatusCode != 200 || resp.Header.Get("Seen-Bytes") != strconv.Itoa(len(tc.body)) ||
					resp.Header.Get("Seen-Trailers") != kept || resp.Header.Get("Seen-Token") != b.token ||
					resp.Header.Get("Seen-Head-Checksum") != "head" {
					t.Errorf("%s: the app saw %v, want trailers %q, the token %q and the head's X-Checksum", tc.name, resp, kept, b.token)
				}
			}
			// No trailer section: the body still ends as it did.
			if resp := raw(t, "", "hello", ""); resp == nil || resp.Header.Get("Seen-Bytes") != "5" || resp.Header.Get("Seen-Trailers") != "" {
				t.Errorf("no trailers: the app saw %v", resp)
			}
			// Framing and routing fields fail the body (fasthttp refuses
			// them): the app never answers a body it did not see end.
			for _, bad := range []string{"Content-Length: 35", "Host: evil", "Transfer-Encoding: chunked", "X-Forwarded-For: 192.0.2.1"} {
				resp := raw(t, "", "hello", "X-Checksum: abc\r\n"+bad+"\r\n")
				if resp != nil && resp.Header.Get("Seen-Bytes") != "" {
					t.Errorf("trailer %q: the app took the body as complete: %v", bad, resp.Header)
				}
			}
		})
	}
}

// TestH2RequestTrailersToHTTP1App: an HTTP/2 client's request trailers
// reach an HTTP/1.1 app in the trailer section of the chunked body the
// stream becomes, by the same rule.
func TestH2RequestTrailersToHTTP1App(t *testing.T) {
	for name, addr := range trailerEchoApps(t) {
		t.Run(name, func(t *testing.T) {
			h := newTLSHarness(t, Config{})
			up := newUpstream(addr, &h.srv.cfg)
			t.Cleanup(up.Close)
			h.app.addBackend(&fakeBackend{addr: addr, token: "h2-token", pid: 77, up: up})
			for _, size := range []int{5, 64 << 10} {
				req, _ := http.NewRequest("POST", h.url("/up"), strings.NewReader(strings.Repeat("t", size)))
				// (Go's HTTP/2 server resets a stream whose trailers
				// have a field that may not be a trailer: none here.)
				req.Trailer = http.Header{"X-Checksum": nil, "Ms-Aspnetcore-Token": nil, "X-Forwarded-For": nil}
				req.Trailer.Set("X-Checksum", "abc")
				req.Trailer.Set("Ms-Aspnetcore-Token", "forged")
				req.Trailer.Set("X-Forwarded-For", "192.0.2.1")
				resp, err := h.client(true).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Seen-Bytes") != strconv.Itoa(size) ||
					resp.Header.Get("Seen-Trailers") != "x-checksum=abc" || resp.Header.Get("Seen-Token") != "h2-token" {
					t.Errorf("%d bytes over HTTP/%d: the app saw %v", size, resp.ProtoMajor, resp.Header)
				}
			}
		})
	}
}
