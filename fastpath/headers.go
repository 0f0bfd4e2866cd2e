// Request header rules: the trust model, and the refusal of ambiguous
// framing (the head rewritten for the backend is in requesthead.go).

package fastpath

import (
	"bytes"
	"errors"
)

// Trust model for request headers.
//
// loopgate is the edge: everything the client sends is untrusted, and the
// backend trusts loopgate (it pairs with MS-ASPNETCORE-TOKEN and, in ASP.NET
// Core's IIS integration, believes the last X-Forwarded-For and
// X-Forwarded-Proto entry). So:
//
//   - every client header whose name starts with MS-ASPNETCORE (any case) is
//     dropped, so a client can neither forge the pairing token nor send
//     MS-ASPNETCORE-EVENT: shutdown, nor a client certificate;
//   - MS-ASPNETCORE-TOKEN is set to the backend's own token;
//   - X-Forwarded-For and X-Forwarded-Proto keep what the client sent (a
//     proxy in front of loopgate may have set them) and loopgate appends the
//     peer it actually saw (ip:port, [v6]:port) and the listener's scheme.
//     Only the last entry is loopgate's word; the app must not trust the
//     earlier ones unless it trusts the proxies that wrote them;
//   - MS-ASPNETCORE-CLIENTCERT is only ever loopgate's: the DER of a client
//     certificate the TLS handshake verified against --tls-client-ca;
//   - hop-by-hop headers (RFC 9110 §7.6.1: Connection and every header it
//     names, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade) describe the
//     client's connection, not the request, and are dropped; a WebSocket
//     upgrade keeps Upgrade and gets "Connection: Upgrade". Content-Length
//     and Transfer-Encoding are rewritten by loopgate, which re-frames the
//     body it forwards; "Expect: 100-continue" was answered by loopgate.
//
// Everything else, including Host, Cookie and the request target, reaches the
// backend byte for byte and in the client's order.

// Request framing errors: each is answered with 400 and the connection is
// closed; the backend never sees the request.
var (
	errBareLF       = errors.New("bare LF in request header")
	errObsFold      = errors.New("obsolete line folding in request header")
	errTEAndCL      = errors.New("both transfer-encoding and content-length")
	errBadTE        = errors.New("transfer-encoding other than a single chunked")
	errDupCL        = errors.New("duplicated content-length")
	errConnTokens   = errors.New("too many connection options")
	errMalformedHdr = errors.New("malformed request header line")
	errBadName      = errors.New("request header name is not a token")
	errLookalike    = errors.New("transfer_encoding or content_length header")
)

// maxConnTokens bounds the hop-by-hop names one request may list in
// Connection; more is refused with 400 rather than half-honoured.
const maxConnTokens = 16

// reqInfo is what the pass over the request headers learns.
type reqInfo struct {
	// lines are the header lines of the raw block scanRequestHeaders
	// read, in order: appendRequestHead copies them from there without
	// searching the block again. The slice is reused from request to
	// request (scanRequestHeaders resets the rest).
	lines      []headLine
	connTokens [maxConnTokens][]byte
	nConn      int
	hasXFF     bool
	hasXFP     bool
	hasHost    bool // a Host line, even an empty one
	websocket  bool // Upgrade: websocket and Connection: upgrade
}

// scanRequestHeaders validates the raw header block of a request (which
// fasthttp's parser accepted) against request smuggling and collects what
// the rewrite needs. fasthttp already refuses duplicated Content-Length,
// non-numeric lengths and Transfer-Encoding on HTTP/1.0; this adds the rules
// it is lenient about: every line ends in CRLF, no obs-fold, every name is
// an RFC 9110 token (fasthttp lets a space inside one through: "Transfer
// Encoding"), no Transfer_Encoding or Content_Length (a backend that folds
// '_' into '-', as CGI-style servers do, would take it for the framing
// header loopgate did not; nginx drops both kinds of names), and a
// Transfer-Encoding is a single "chunked" with no Content-Length beside it.
func scanRequestHeaders(raw []byte, ri *reqInfo) error {
	*ri = reqInfo{lines: ri.lines[:0]}
	var te, cl int
	teChunked := true
	upgradeWS, connUpgrade := false, false
	for start := 0; start < len(raw); {
		i := bytes.IndexByte(raw[start:], '\n')
		switch {
		case i < 0:
			return errMalformedHdr
		case i == 0 || raw[start+i-1] != '\r':
			return errBareLF
		}
		end := start + i - 1 // the line's CR
		line := raw[start:end]
		if len(line) == 0 {
			break
		}
		// One loop finds the colon and checks that the name before it
		// is a token.
		colon := 0
		for colon < len(line) && tchar[line[colon]] {
			colon++
		}
		if colon == 0 || colon == len(line) || line[colon] != ':' {
			return badHeaderLine(line)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		ri.lines = append(ri.lines, headLine{start: start, colon: start + colon, end: end})
		start = end + 2
		if framingLookalike(name) {
			return errLookalike
		}
		switch len(name) {
		case len("transfer-encoding"): // and x-forwarded-proto
			if equalFoldASCII(name, "transfer-encoding") {
				te++
				if !equalFoldASCII(value, "chunked") {
					teChunked = false
				}
			} else if equalFoldASCII(name, "x-forwarded-proto") {
				ri.hasXFP = true
			}
		case len("content-length"):
			if equalFoldASCII(name, "content-length") {
				cl++
			}
		case len("connection"):
			if !equalFoldASCII(name, "connection") {
				break
			}
			for len(value) > 0 {
				var tok []byte
				tok, value = nextToken(value)
				if len(tok) == 0 {
					continue
				}
				if equalFoldASCII(tok, "upgrade") {
					connUpgrade = true
				}
				if ri.nConn == maxConnTokens {
					return errConnTokens
				}
				ri.connTokens[ri.nConn] = tok
				ri.nConn++
			}
		case len("upgrade"):
			if !equalFoldASCII(name, "upgrade") {
				break
			}
			for len(value) > 0 {
				var tok []byte
				tok, value = nextToken(value)
				if equalFoldASCII(tok, "websocket") {
					upgradeWS = true
				}
			}
		case len("host"):
			if equalFoldASCII(name, "host") {
				ri.hasHost = true
			}
		case len("x-forwarded-for"):
			if equalFoldASCII(name, "x-forwarded-for") {
				ri.hasXFF = true
			}
		}
	}
	if cl > 1 {
		return errDupCL
	}
	if te > 0 {
		if cl > 0 {
			return errTEAndCL
		}
		if te > 1 || !teChunked {
			return errBadTE
		}
	}
	ri.websocket = upgradeWS && connUpgrade
	return nil
}

// headLine is where scanRequestHeaders found one header line in the raw
// block: its name is raw[start:colon], its value (untrimmed)
// raw[colon+1:end], and CRLF follows at end.
type headLine struct{ start, colon, end int }

// badHeaderLine says what is wrong with a header line whose name is not a
// token followed by a colon.
func badHeaderLine(line []byte) error {
	if line[0] == ' ' || line[0] == '\t' {
		return errObsFold
	}
	if bytes.IndexByte(line, ':') <= 0 {
		return errMalformedHdr
	}
	return errBadName
}

// tchar: RFC 9110 §5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// framingLookalike reports Transfer_Encoding and Content_Length (any case,
// any of their '-' written '_').
func framingLookalike(name []byte) bool {
	var s string
	switch len(name) {
	case len("transfer-encoding"):
		s = "transfer-encoding"
	case len("content-length"):
		s = "content-length"
	default:
		return false
	}
	under := false
	for i, c := range name {
		if c == '_' && s[i] == '-' {
			under = true
			continue
		}
		if lower(c) != s[i] {
			return false
		}
	}
	return under
}

// nextHeaderLine splits the first CRLF-terminated line off raw.
func nextHeaderLine(raw []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(raw, '\n')
	switch {
	case i < 0:
		return nil, nil, errMalformedHdr
	case i == 0 || raw[i-1] != '\r':
		return nil, nil, errBareLF
	}
	return raw[:i-1], raw[i+1:], nil
}

// splitHeader splits "Name: value" and trims optional whitespace around the
// value.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return nil, nil, false
	}
	return line[:i], trimOWS(line[i+1:]), i > 0
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// nextToken returns the first element of a comma-separated list, trimmed,
// and the rest of the list.
func nextToken(list []byte) (tok, rest []byte) {
	for i, c := range list {
		if c == ',' {
			return trimOWS(list[:i]), list[i+1:]
		}
	}
	return trimOWS(list), nil
}
