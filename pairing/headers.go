package pairing

import (
	"crypto/sha256"
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
	hdrToken         = "Ms-Aspnetcore-Token"
	hdrEvent         = "Ms-Aspnetcore-Event"
	hdrClientCert    = "Ms-Aspnetcore-Clientcert"
	hdrForwardedFor  = "X-Forwarded-For"
	hdrForwardedProt = "X-Forwarded-Proto"
	hdrOriginalFor   = "X-Original-For"
	hdrOriginalProto = "X-Original-Proto"
)

// shutdownPath is the path of the graceful shutdown request after the path
// base is stripped; compared case-insensitively (ancm-spec.md §6.3).
const shutdownPath = "/iisintegration"

// core is the state both middleware flavours share. It is safe for
// concurrent use.
type core struct {
	token    []byte
	base     string // APPL_PATH as UsePathBase matches it; "" for "/"
	baseB    []byte
	stop     func()
	stopOnce sync.Once
	log      zerolog.Logger
}

func newCore(c Config, opts Options) *core {
	m := &core{
		token: []byte(c.Token),
		base:  c.pathBase(),
		stop:  opts.Stop,
		log:   opts.Log,
	}
	m.baseB = []byte(m.base)
	if m.stop == nil {
		m.stop = m.signalSelf
	}
	return m
}

// triggerStop runs the stop function once per middleware, in its own
// goroutine so a stop that waits for in-flight requests (http.Server.Shutdown)
// does not wait for the request that asked for it.
func (m *core) triggerStop() {
	m.stopOnce.Do(func() { go m.stop() })
}

// signalSelf is the stop function when the caller gives none: SIGTERM to
// this process, which is what loopgate falls back to anyway.
func (m *core) signalSelf() {
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		m.log.Error().Err(err).Msg("pairing: cannot send SIGTERM to self after the shutdown request")
	}
}

// tokenVerdict is the outcome of the token check; the reasons are logged.
type tokenVerdict uint8

const (
	tokenOK tokenVerdict = iota
	tokenMissing
	tokenMultiple
	tokenMismatch
)

func (v tokenVerdict) String() string {
	switch v {
	case tokenOK:
		return "ok"
	case tokenMissing:
		return "missing"
	case tokenMultiple:
		return "sent more than once"
	default:
		return "mismatch"
	}
}

// logRejected records a rejected request. It never logs the expected
// token, and of the received value only its length and a short hash, enough
// to tell "always the same wrong token" (a stale backend) from noise.
// e is an enabled error event, so nothing is formatted for a disabled log.
func (m *core) logRejected(e *zerolog.Event, v tokenVerdict, got []byte, count int, method, path, remote string) {
	e = e.Str("reason", v.String()).Str("method", method).Str("path", path).Str("remote", remote)
	switch v {
	case tokenMultiple:
		e = e.Int("values", count)
	case tokenMismatch:
		sum := sha256.Sum256(got)
		e = e.Int("received_len", len(got)).Str("received_sha256_prefix", hex.EncodeToString(sum[:4]))
	}
	e.Msg("pairing: MS-ASPNETCORE-TOKEN does not match the pairing token; request rejected with 400")
}

// lastEntry finds the right-most non-empty entry of a comma-separated
// header line, trimmed of spaces and tabs, and the line before it with the
// separator trimmed. ok is false when the line holds no entry.
func lastEntry[T ~string | ~[]byte](line T) (rest, entry T, ok bool) {
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

func isSep(b byte) bool { return b == ',' || b == ' ' || b == '\t' }

// parseEndpoint reads an X-Forwarded-For entry the way IPEndPoint.TryParse
// does for the forms a proxy writes: "ip:port", "[v6]:port", "[v6]" and a
// bare IPv4 or IPv6 address (port 0). Unlike .NET it refuses abbreviated
// IPv4 forms such as "1" or "1.2".
func parseEndpoint(s string) (netip.AddrPort, bool) {
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

// validScheme reports whether s may become the request scheme: non-empty
// and only RFC 3986 scheme characters, the check ForwardedHeadersMiddleware
// applies.
func validScheme[T ~string | ~[]byte](s T) bool {
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

// trustedPeer reports whether forwarded headers from peer are applied:
// ASP.NET Core's defaults trust 127.0.0.0/8 and ::1 only (ancm-spec.md
// §6.1), and loopgate always connects over loopback.
func trustedPeer(peer netip.Addr) bool {
	return peer.Unmap().IsLoopback()
}

// parseClientCert decodes MS-ASPNETCORE-CLIENTCERT: base64 of the
// certificate's DER bytes, as ForwardedTlsConnectionFeature reads it.
func parseClientCert(b64 string, log *zerolog.Logger) *x509.Certificate {
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
