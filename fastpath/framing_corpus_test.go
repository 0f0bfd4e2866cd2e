package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The framing corpus: requests modelled on the mutation classes of
// defparam/smuggler (configs/default.py, exhaustive.py, doubles.py: a
// Transfer-Encoding header mutated beside a Content-Length, sent as a CL.TE
// and a TE.CL probe) and on the classes of parsing discrepancies the HTTP
// Garden project published (Kallus et al., "The HTTP Garden", 2024, and
// the reports filed from it: chunk-size and chunk-line leniencies, length
// values, header-name and request-line oddities, trailers that frame). The
// cases are written here; none is copied. For every case the client
// frames two requests (the case, then an honest GET right behind it), and
//
//   - the backend sees at most as many requests as the client framed, and
//     never the request hidden in a body (/smuggled);
//   - the client gets 400 (505 or 501 where the case names it) and the
//     connection closes, or one correctly framed exchange: 200, then the
//     honest request answered 200 too, the backend having seen the case's
//     request and then exactly the honest one.
//
// A case whose fault is in a chunked body may reach the backend as one
// request cut short (the head went out before the fault was read).

// corpusBackend records every request line it reads, per connection, and
// answers each complete request 200.
type corpusBackend struct {
	mu   sync.Mutex
	seen []string
}

func newCorpusBackend(t *testing.T) (*corpusBackend, string) {
	b := &corpusBackend{}
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r, err := readRawRequest(br)
			if r.head != "" {
				b.mu.Lock()
				b.seen = append(b.seen, r.lines()[0])
				b.mu.Unlock()
			}
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, okResponse); err != nil {
				return
			}
		}
	})
	return b, addr
}

// lines returns the request lines seen whose target contains tag.
func (b *corpusBackend) lines(tag string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range b.seen {
		if strings.Contains(l, tag) {
			out = append(out, l)
		}
	}
	return out
}

// corpusCase is one request of the corpus; in req, TAG is replaced by the
// case's own tag, so that the backend's log can be read per case.
type corpusCase struct {
	name, req string
	// refused lists the statuses the case may get (400 when empty); an
	// accepted case gets 200 instead, when accept is set.
	refused []int
	accept  bool
	// streamed: the fault is in a chunked body, found after the head
	// went out; the backend may see the request, cut short.
	streamed bool
	// next: the case, accepted, is followed by a request of the client's
	// own framing, GET /next-TAG, that the backend sees too.
	next bool
}

// hiddenReq is the request a mis-framed body would smuggle in; nextReq is
// one the client frames as its own next request.
const (
	hiddenReq = "GET /smuggled-TAG HTTP/1.1\r\nHost: a\r\n\r\n"
	nextReq   = "GET /next-TAG HTTP/1.1\r\nHost: a\r\n\r\n"
)

// smugglerGadgets returns the Transfer-Encoding mutations of smuggler's
// classes, each a header line (without its CRLF) with its class name.
func smugglerGadgets() map[string]string {
	g := map[string]string{
		// configs/default.py and exhaustive.py, named classes
		"nameprefix1":  " Transfer-Encoding: chunked",
		"tabprefix1":   "Transfer-Encoding:\tchunked",
		"tabprefix2":   "Transfer-Encoding\t:\tchunked",
		"spacejoin1":   "Transfer Encoding: chunked",
		"underjoin1":   "Transfer_Encoding: chunked",
		"smashed":      "Transfer Encoding:chunked",
		"space1":       "Transfer-Encoding : chunked",
		"valueprefix1": "Transfer-Encoding:  chunked",
		"vertprefix1":  "Transfer-Encoding:\x0bchunked",
		"commaCow":     "Transfer-Encoding: chunked, cow",
		"cowComma":     "Transfer-Encoding: cow, chunked",
		"contentEnc":   "Content-Encoding: chunked",
		"linewrapped1": "Transfer-Encoding:\n chunked",
		"quoted":       "Transfer-Encoding: \"chunked\"",
		"aposed":       "Transfer-Encoding: 'chunked'",
		"lazygrep":     "Transfer-Encoding: chunk",
		"sarcasm":      "TrAnSFer-EnCODinG: cHuNkeD",
		"yelling":      "TRANSFER-ENCODING: CHUNKED",
		"0dsuffix":     "Transfer-Encoding: chunked\r",
		"tabsuffix":    "Transfer-Encoding: chunked\t",
		"revdualchunk": "Transfer-Encoding: cow\r\nTransfer-Encoding: chunked",
		"0dspam":       "Transfer\r-Encoding: chunked",
		"nested":       "Transfer-Encoding: cow chunked bar",
		"spaceFF":      "Transfer-Encoding:\xffchunked",
		"accentCH":     "Transfer-Encoding: ch\x96nked",
		"accentTE":     "Transf\x82r-Encoding: chunked",
		"x-rout":       "X:X\rTransfer-Encoding: chunked",
		"x-nout":       "X:X\nTransfer-Encoding: chunked",
		// our own, in the same spirit
		"underjoin-cl": "Content_Length: 0",
		"dual-te-cl":   "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
	}
	// The byte-position classes of default.py (and doubles.py's pairs),
	// over its byte list.
	for _, c := range []byte{0x01, 0x04, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1f, 0x20, 0x7f, 0xa0, 0xff} {
		s := string([]byte{c})
		for class, line := range map[string]string{
			"midspace":   "Transfer-Encoding:" + s + "chunked",
			"postspace":  "Transfer-Encoding" + s + ": chunked",
			"prespace":   s + "Transfer-Encoding: chunked",
			"endspace":   "Transfer-Encoding: chunked" + s,
			"xprespace":  "X: X" + s + "Transfer-Encoding: chunked",
			"endspacex":  "Transfer-Encoding: chunked" + s + "X: X",
			"rxprespace": "X: X\r" + s + "Transfer-Encoding: chunked",
			"xnprespace": "X: X" + s + "\nTransfer-Encoding: chunked",
			"endspacerx": "Transfer-Encoding: chunked\r" + s + "X: X",
			"endspacexn": "Transfer-Encoding: chunked" + s + "\nX: X",
			"double-pre": s + "Transfer-Encoding" + s + ": chunked",
			"double-mid": "Transfer-Encoding" + s + ":" + s + "chunked",
		} {
			g[fmt.Sprintf("%s-%02x", class, c)] = line
		}
	}
	return g
}

// smugglerCases turns each gadget into smuggler's two probes: CL.TE (the
// Content-Length covers a chunked body that ends early, followed by the
// hidden request) and TE.CL (the Content-Length covers only a chunk-size
// line, the chunk holds the hidden request).
func smugglerCases() []corpusCase {
	var out []corpusCase
	for name, gadget := range smugglerGadgets() {
		// Refused although no parser takes them for Transfer-Encoding:
		// a name with a space is no token, and a backend may read '_'
		// as '-' (headers.go).
		accept := name != "spacejoin1" && name != "smashed" && name != "underjoin1" && name != "underjoin-cl"
		clte := "0\r\n\r\n" + hiddenReq
		out = append(out, corpusCase{
			name:   "smuggler " + name + " CL.TE",
			req:    "POST /c-TAG HTTP/1.1\r\nHost: a\r\n" + gadget + "\r\nContent-Length: " + strconv.Itoa(len(clte)) + "\r\n\r\n" + clte,
			accept: accept,
		})
		// The chunk holds the hidden request behind a space, so that read
		// as what follows a 4-byte body it is no request at all (400).
		tecl := strconv.FormatInt(int64(len(hiddenReq)+1), 16) + "\r\n " + hiddenReq + "\r\n0\r\n\r\n"
		out = append(out, corpusCase{
			name:   "smuggler " + name + " TE.CL",
			req:    "POST /c-TAG HTTP/1.1\r\nHost: a\r\n" + gadget + "\r\nContent-Length: 4\r\n\r\n" + tecl,
			accept: accept,
		})
	}
	return out
}

// gardenCases are cases of the HTTP Garden's published discrepancy classes.
func gardenCases() []corpusCase {
	post := func(headers, body string) string {
		return "POST /c-TAG HTTP/1.1\r\nHost: a\r\n" + headers + "\r\n" + body
	}
	chunked := func(body string) string { return post("Transfer-Encoding: chunked\r\n", body) }
	return []corpusCase{
		// Chunk-size lines: whitespace, signs, prefixes, overflow, bare CR
		// or LF, junk where the CRLF after the data belongs.
		{name: "garden chunk-size with leading space", req: chunked(" 23\r\n" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk-size with trailing space", req: chunked("23 \r\n" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk-size with a tab before the extension", req: chunked("23\t;x\r\n" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk-size with a plus sign", req: chunked("+23\r\n" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk-size overflowing 64 bits to a small one", req: chunked("10000000000000023\r\n" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk-size ended by a bare CR", req: chunked("23\r" + hiddenReq + "\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk data longer than its size", req: chunked("3\r\nabcGET /smuggled-TAG HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n"), streamed: true},
		{name: "garden chunk data followed by junk instead of CRLF", req: chunked("3\r\nabcXX0\r\n\r\n" + hiddenReq), streamed: true},
		{name: "garden last chunk ended by a bare LF", req: chunked("0\n\r\n" + hiddenReq), streamed: true},
		// The last chunk's extension and the trailer section are read
		// leniently (fasthttp's parser) and never forwarded: the app gets
		// loopgate's own 0\r\n\r\n, so they cannot frame anything for it.
		{name: "garden last chunk with a NUL in its extension", req: chunked("0;a\x00b\r\n\r\n" + nextReq), accept: true, next: true},
		{name: "garden trailer section ended by a bare LF", req: chunked("0\r\nX-T: 1\n\n" + nextReq), accept: true, next: true},
		{name: "garden trailer with obs-fold", req: chunked("0\r\nX-T: 1\r\n folded\r\n\r\n" + nextReq), accept: true, next: true},
		// Trailers may not frame: a Content-Length in the trailer section
		// is refused (after the head went out).
		{name: "garden trailer with Content-Length", req: chunked("0\r\nContent-Length: 35\r\n\r\n" + hiddenReq), streamed: true},
		{name: "garden leading zeros in the last chunk", req: chunked("000\r\n\r\n"), accept: true},
		// Content-Length values.
		{name: "garden Content-Length with leading zeros", req: post("Content-Length: 0005\r\n", "hello"), accept: true},
		{name: "garden Content-Length with an underscore", req: post("Content-Length: 3_5\r\n", hiddenReq)},
		{name: "garden Content-Length in hex", req: post("Content-Length: 0x23\r\n", hiddenReq)},
		{name: "garden Content-Length with a decimal point", req: post("Content-Length: 35.0\r\n", hiddenReq)},
		{name: "garden Content-Length empty", req: post("Content-Length:\r\n", hiddenReq)},
		{name: "garden Content-Length with a space inside", req: post("Content-Length: 3 5\r\n", hiddenReq)},
		{name: "garden Content-Length negative", req: post("Content-Length: -1\r\n", hiddenReq)},
		{name: "garden Content-Length beyond 64 bits", req: post("Content-Length: 18446744073709551651\r\n", hiddenReq)},
		// Header names and lines.
		{name: "garden empty header name", req: post(": x\r\nContent-Length: 35\r\n", hiddenReq)},
		{name: "garden header line starting with a space first", req: "POST /c-TAG HTTP/1.1\r\n Host: a\r\nContent-Length: 35\r\n\r\n" + hiddenReq},
		{name: "garden header name with a slash", req: post("Content/Length: 0\r\nContent-Length: 35\r\n", hiddenReq), accept: true},
		{name: "garden header without a colon", req: post("Content-Length 0\r\nContent-Length: 35\r\n", hiddenReq)},
		{name: "garden DEL in a header value", req: post("X-A: a\x7fb\r\nContent-Length: 35\r\n", hiddenReq), accept: true},
		// Request lines.
		{name: "garden two spaces after the method", req: "GET  /c-TAG HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden tab after the method", req: "GET\t/c-TAG HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden space before the line end", req: "GET /c-TAG HTTP/1.1 \r\nHost: a\r\n\r\n"},
		{name: "garden lowercase version", req: "GET /c-TAG http/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden version with three digits", req: "GET /c-TAG HTTP/1.10\r\nHost: a\r\n\r\n"},
		{name: "garden version 2.0 with a Content-Length body", req: "POST /c-TAG HTTP/2.0\r\nHost: a\r\nContent-Length: 35\r\n\r\n" + hiddenReq, refused: []int{505}},
		{name: "garden NUL in the target", req: "GET /c-TAG\x00x HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden CR in the request line", req: "GET /c-TAG\rx HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden method with a delimiter", req: "G(T /c-TAG HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "garden HTTP/1.0 with chunked and Content-Length", req: "POST /c-TAG HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + hiddenReq},
		{name: "garden Host twice, one empty", req: "GET /c-TAG HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n"},
	}
}

// TestFramingCorpus runs the corpus (see the top of this file).
func TestFramingCorpus(t *testing.T) {
	b, addr := newCorpusBackend(t)
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	cases := append(smugglerCases(), gardenCases()...)
	for i, tc := range cases {
		tag := "t" + strconv.Itoa(i) + "x"
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, h.addr)
			c.send(strings.ReplaceAll(tc.req, "TAG", tag))
			c.send(get("a", "/after-"+tag))
			r, _ := c.response("POST")
			// What follows an accepted case: its own next request, the
			// honest one, or the client's junk refused.
			var more []int
			for n := 0; r.StatusCode == 200 && !r.Close && n < 2; n++ {
				resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				more = append(more, resp.StatusCode)
				if resp.StatusCode != 200 || resp.Close || !tc.next {
					break
				}
			}
			time.Sleep(20 * time.Millisecond) // let the backend log what it got
			seen := b.lines(tag)
			for _, l := range seen {
				if strings.Contains(l, "/smuggled") {
					t.Errorf("the backend saw the hidden request %q", l)
				}
			}
			framed := 2
			if tc.next {
				framed = 3
			}
			if len(seen) > framed {
				t.Errorf("the backend saw %d requests for the %d the client framed: %q", len(seen), framed, seen)
			}
			refused := tc.refused
			if len(refused) == 0 {
				refused = []int{400}
			}
			switch {
			case r.StatusCode == 200:
				if !tc.accept {
					t.Errorf("accepted (200); want %v", refused)
				}
				if len(seen) == 0 || !strings.Contains(seen[0], "/c-"+tag+" ") {
					t.Fatalf("the backend saw %q; want the case's request first", seen)
				}
				for i, l := range seen[1:] {
					want := "GET /after-" + tag + " HTTP/1.1"
					if tc.next && i == 0 {
						want = "GET /next-" + tag + " HTTP/1.1"
					}
					if l != want {
						t.Errorf("the backend's request %d is %q, want %q", i+2, l, want)
					}
				}
				for i, st := range more {
					if st != 200 && (st != 400 || i != len(more)-1) {
						t.Errorf("response %d after the case: %d", i+2, st)
					}
				}
			case containsInt(refused, r.StatusCode):
				if !r.Close && !c.closedByPeer(time.Second) {
					t.Error("connection kept open after a refusal")
				}
				if len(seen) > 0 && !tc.streamed {
					t.Errorf("refused with %d, but the backend saw %q", r.StatusCode, seen)
				}
				if len(seen) > 1 {
					t.Errorf("the backend saw %q", seen)
				}
			default:
				t.Errorf("status %d; want %v%s", r.StatusCode, refused, map[bool]string{true: " or 200"}[tc.accept])
			}
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
