// Package hosting holds what the net/http and fasthttp flavours of the
// app-side middleware share: the per-app state (token, path base, stop
// function, log) and the rules of ASP.NET Core's IIS integration and
// forwarded-headers middleware that do not depend on an HTTP server.
package hosting

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
)

// Header names of the hosting contract, in the canonical form net/http
// keys its Header map with (fasthttp normalizes to the same form).
const (
	HdrToken         = "Ms-Aspnetcore-Token"
	HdrEvent         = "Ms-Aspnetcore-Event"
	HdrClientCert    = "Ms-Aspnetcore-Clientcert"
	HdrForwardedFor  = "X-Forwarded-For"
	HdrForwardedProt = "X-Forwarded-Proto"
	HdrOriginalFor   = "X-Original-For"
	HdrOriginalProto = "X-Original-Proto"
)

// ShutdownPath is the path of the graceful shutdown request after the path
// base is stripped, compared case-insensitively; ShutdownEvent the
// MS-ASPNETCORE-EVENT value, also any case (ancm-spec.md §6.3).
const (
	ShutdownPath  = "/iisintegration"
	ShutdownEvent = "shutdown"
)

// Core is one middleware's state. It is safe for concurrent use.
type Core struct {
	Token     []byte
	Base      string // APPL_PATH as UsePathBase matches it; "" for "/"
	BaseBytes []byte
	Log       zerolog.Logger
	stop      func()
	stopOnce  sync.Once
}

// New returns the state for an app with the given token and APPL_PATH.
// A nil stop sends SIGTERM to the process.
func New(token, applPath string, stop func(), log zerolog.Logger) *Core {
	c := &Core{Token: []byte(token), Base: PathBase(applPath), Log: log, stop: stop}
	c.BaseBytes = []byte(c.Base)
	if c.stop == nil {
		c.stop = c.signalSelf
	}
	return c
}

// PathBase is APPL_PATH in the form UsePathBase matches it: with a leading
// slash and without trailing ones, so "/" (and "") become "", no base.
// ASP.NET Core refuses a path without a leading slash at startup; loopgate
// never sends one, and adding the slash is the only sensible reading.
func PathBase(applPath string) string {
	p := strings.TrimRight(applPath, "/")
	if p != "" && p[0] != '/' {
		p = "/" + p
	}
	return p
}

// TriggerStop runs the stop function once per Core, in its own goroutine,
// so a stop that waits for in-flight requests (http.Server.Shutdown) does
// not wait for the request that asked for it.
func (c *Core) TriggerStop() {
	c.stopOnce.Do(func() { go c.stop() })
}

// signalSelf is the stop function when the caller gives none: SIGTERM to
// this process, which is what loopgate falls back to anyway.
func (c *Core) signalSelf() {
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		c.Log.Error().Err(err).Msg("pairing: cannot send SIGTERM to self after the shutdown request")
	}
}

// Verdict is the outcome of the token check.
type Verdict uint8

const (
	TokenOK Verdict = iota
	TokenMissing
	TokenMultiple
	TokenMismatch
)

func (v Verdict) String() string {
	switch v {
	case TokenOK:
		return "ok"
	case TokenMissing:
		return "missing"
	case TokenMultiple:
		return "sent more than once"
	default:
		return "mismatch"
	}
}

// CheckToken judges the MS-ASPNETCORE-TOKEN values of a request: exactly
// one, equal to the token, compared in constant time. It returns the
// received value for the log.
func CheckToken[T ~string | ~[]byte](c *Core, vals []T) (Verdict, T) {
	var none T
	switch len(vals) {
	case 0:
		return TokenMissing, none
	case 1:
		if subtle.ConstantTimeCompare([]byte(vals[0]), c.Token) == 1 {
			return TokenOK, vals[0]
		}
		return TokenMismatch, vals[0]
	default:
		return TokenMultiple, none
	}
}

// LogRejected records a rejected request on e, an enabled error event (so
// nothing is formatted for a disabled log). It never logs the expected
// token, and of the received value only its length and a short hash, enough
// to tell "always the same wrong token" (a stale backend) from noise.
func LogRejected(e *zerolog.Event, v Verdict, got string, count int, method, path, remote string) {
	e = e.Str("reason", v.String()).Str("method", method).Str("path", path).Str("remote", remote)
	switch v {
	case TokenMultiple:
		e = e.Int("values", count)
	case TokenMismatch:
		sum := sha256.Sum256([]byte(got))
		e = e.Int("received_len", len(got)).Str("received_sha256_prefix", hex.EncodeToString(sum[:4]))
	}
	e.Msg("pairing: MS-ASPNETCORE-TOKEN does not match the pairing token; request rejected with 400")
}

// LogShutdown records the shutdown request.
func (c *Core) LogShutdown(remote string) {
	c.Log.Info().Str("remote", remote).Msg("pairing: shutdown requested by the host; stopping gracefully")
}

// LastEntry finds the right-most non-empty entry of a comma-separated
// header line, trimmed of spaces and tabs, and the line before it with the
// separator trimmed. ok is false when the line holds no entry.
func LastEntry[T ~string | ~[]byte](line T) (rest, entry T, ok bool) {
	end := len(line)
	for end > 0 && isSep(line[end-1]) {
		end--
	}
	if end == 0 {
		return line[:0], line[:0], false
	}
	start := end
	for start > 0 && line[start-1] != ',' {
		start--
	}
	entry = line[start:end]
	for len(entry) > 0 && (entry[0] == ' ' || entry[0] == '\t') {
		entry = entry[1:]
	}
	rest = line[:start]
	for len(rest) > 0 && isSep(rest[len(rest)-1]) {
		rest = rest[:len(rest)-1]
	}
	return rest, entry, true
}

// LastOfLines finds the right-most entry over all lines of a header: the
// index of its line (-1 if none), that line without it, and the entry.
func LastOfLines[T ~string | ~[]byte](lines []T) (at int, rest, entry T) {
	for i := len(lines) - 1; i >= 0; i-- {
		if rest, entry, ok := LastEntry(lines[i]); ok {
			return i, rest, entry
		}
	}
	return -1, rest, entry
}

func isSep(b byte) bool { return b == ',' || b == ' ' || b == '\t' }

// ParseEndpoint reads an X-Forwarded-For entry the way IPEndPoint.TryParse
// does for the forms a proxy writes: "ip:port", "[v6]:port", "[v6]" and a
// bare IPv4 or IPv6 address (port 0). Unlike .NET it refuses abbreviated
// IPv4 forms such as "1" or "1.2".
func ParseEndpoint(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
		if !strings.Contains(s, ":") { // "[1.2.3.4]" is not an address
			return netip.AddrPort{}, false
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, 0), true
}

// ValidScheme reports whether s may become the request scheme: non-empty
// and only RFC 3986 scheme characters, the check ForwardedHeadersMiddleware
// applies.
func ValidScheme[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// TrustedPeer reports whether forwarded headers from peer are applied:
// ASP.NET Core's defaults trust 127.0.0.0/8 and ::1 only (ancm-spec.md
// §6.1), and loopgate always connects over loopback.
func TrustedPeer(peer netip.Addr) bool {
	return peer.Unmap().IsLoopback()
}

// ParseClientCert decodes MS-ASPNETCORE-CLIENTCERT: base64 of the
// certificate's DER bytes, as ForwardedTlsConnectionFeature reads it. A
// value that does not decode is logged as a warning and gives nil.
func ParseClientCert(b64 string, log *zerolog.Logger) *x509.Certificate {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err == nil {
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(der); err == nil {
			return cert
		}
	}
	log.Warn().Err(err).Int("len", len(b64)).Msg("pairing: failed to read the client certificate from MS-ASPNETCORE-CLIENTCERT")
	return nil
}
