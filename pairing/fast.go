package pairing

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"net"
	"net/netip"
	"sync"

	"github.com/valyala/fasthttp"
)

// FastMiddleware is Middleware for fasthttp: the same contract, rules and
// order. The results live in the RequestCtx: ctx.RemoteAddr() is the
// client, ctx.URI().Scheme() the forwarded scheme, ctx.Path() the path
// without the base; FastPathBase and FastClientCertificate read the rest.
//
// It expects the server's default header-name normalization
// (DisableHeaderNamesNormalizing false). Options.Stop runs when fasthttp
// releases the shutdown request, after the 202 is written; a handler driven
// outside fasthttp.Server must call ctx.Request.Reset() for that to happen.
// The returned middleware is safe for concurrent use; a request that needs
// no path base and carries no client certificate allocates nothing in it.
func (c Config) FastMiddleware(opts Options) func(fasthttp.RequestHandler) fasthttp.RequestHandler {
	if !c.Hosted() {
		return func(next fasthttp.RequestHandler) fasthttp.RequestHandler { return next }
	}
	m := newCore(c, opts)
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) { m.serveFast(next, ctx) }
	}
}

// fastInfo is what the middleware records for one fasthttp request. It is
// stored as a user value, so fasthttp calls Close once the response is
// written, which recycles it (and starts Stop for a shutdown request).
// Nothing outside this package sees it: the accessors return copies.
type fastInfo struct {
	m        *core
	base     []byte
	cert     []byte
	parsed   *x509.Certificate
	certDone bool
	shutdown bool
}

type fastInfoKey struct{}

var fastInfoPool = sync.Pool{New: func() any { return new(fastInfo) }}

func (m *core) acquireFastInfo() *fastInfo {
	info := fastInfoPool.Get().(*fastInfo)
	info.m = m
	return info
}

// Close implements io.Closer for fasthttp's user-value cleanup.
func (info *fastInfo) Close() error {
	if info.shutdown {
		info.m.triggerStop()
	}
	*info = fastInfo{base: info.base[:0], cert: info.cert[:0]}
	fastInfoPool.Put(info)
	return nil
}

var (
	shutdownPathB = []byte(shutdownPath)
	shutdownEvent = []byte("shutdown")
)

func (m *core) serveFast(next fasthttp.RequestHandler, ctx *fasthttp.RequestCtx) {
	var info *fastInfo
	if m.base != "" {
		if p := ctx.Path(); hasPathBase(p, m.baseB) {
			info = m.acquireFastInfo()
			info.base = append(info.base, p[:len(m.baseB)]...)
			setFastPath(ctx.URI(), p[len(m.baseB):])
		}
	}
	m.forwardFast(ctx)

	h := &ctx.Request.Header
	vals := h.PeekAll(hdrToken)
	verdict := tokenMismatch
	var got []byte
	switch len(vals) {
	case 0:
		verdict = tokenMissing
	case 1:
		got = vals[0]
		if subtle.ConstantTimeCompare(got, m.token) == 1 {
			verdict = tokenOK
		}
	default:
		verdict = tokenMultiple
	}
	if verdict != tokenOK {
		if e := m.log.Error(); e.Enabled() {
			m.logRejected(e, verdict, got, len(vals), string(ctx.Method()), string(ctx.Path()), ctx.RemoteAddr().String())
		}
		if info != nil {
			info.Close()
		}
		emptyAnswer(ctx, fasthttp.StatusBadRequest)
		return
	}
	h.Del(hdrToken)

	if ctx.IsPost() && bytes.EqualFold(ctx.Path(), shutdownPathB) {
		if ev := h.PeekAll(hdrEvent); len(ev) == 1 && bytes.EqualFold(ev[0], shutdownEvent) {
			m.log.Info().Str("remote", ctx.RemoteAddr().String()).Msg("pairing: shutdown requested by the host; stopping gracefully")
			emptyAnswer(ctx, fasthttp.StatusAccepted)
			if info == nil {
				info = m.acquireFastInfo()
			}
			info.shutdown = true
			ctx.SetUserValue(fastInfoKey{}, info)
			return
		}
	}

	if cert := h.Peek(hdrClientCert); len(cert) > 0 {
		if info == nil {
			info = m.acquireFastInfo()
		}
		info.cert = append(info.cert, cert...)
	}
	if info != nil {
		ctx.SetUserValue(fastInfoKey{}, info)
	}
	next(ctx)
}

// emptyAnswer sets a status with an empty body and no Content-Type, as the
// reference's 400 and 202 answers are.
func emptyAnswer(ctx *fasthttp.RequestCtx, status int) {
	ctx.Response.Reset()
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.SetStatusCode(status)
}

// hasPathBase reports whether path starts with base, case-insensitively,
// on a segment boundary.
func hasPathBase(path, base []byte) bool {
	n := len(base)
	return len(path) >= n && bytes.EqualFold(path[:n], base) && (len(path) == n || path[n] == '/')
}

// setFastPath makes rest, a piece of the decoded, normalized path, the new
// path. SetPathBytes decodes its argument again, so '%' is re-encoded; the
// path is already normalized, so normalizing again changes nothing else.
func setFastPath(u *fasthttp.URI, rest []byte) {
	if len(rest) == 0 {
		u.SetPath("/")
		return
	}
	if bytes.IndexByte(rest, '%') < 0 {
		u.SetPathBytes(rest)
		return
	}
	var buf [256]byte
	esc := buf[:0]
	for _, c := range rest {
		if c == '%' {
			esc = append(esc, "%25"...)
		} else {
			esc = append(esc, c)
		}
	}
	u.SetPathBytes(esc)
}

// forwardFast is forwardHTTP for fasthttp. Header values are copied out
// before the first header is modified, because fasthttp reuses the storage
// of deleted headers.
func (m *core) forwardFast(ctx *fasthttp.RequestCtx) {
	tcp, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	peer := tcp.AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !trustedPeer(peer.Addr()) {
		return
	}
	h := &ctx.Request.Header

	var forBuf [128]byte
	var forRemain []byte
	var client netip.AddrPort
	forLines := h.PeekAll(hdrForwardedFor)
	forAt, forRest, forEntry := lastOfLinesB(forLines)
	if forAt >= 0 {
		if client, ok = parseEndpoint(string(forEntry)); !ok {
			return // as ForwardedHeadersMiddleware: stop at an unparsable address
		}
		forRemain = joinRemaining(forBuf[:0], forLines[:forAt], forRest)
	}

	var protoBuf [64]byte
	var schemeBuf [16]byte
	var protoRemain, scheme []byte
	protoLines := h.PeekAll(hdrForwardedProt) // reuses the slice PeekAll returned above
	protoAt, protoRest, protoEntry := lastOfLinesB(protoLines)
	applyProto := protoAt >= 0 && validScheme(protoEntry)
	if applyProto {
		protoRemain = joinRemaining(protoBuf[:0], protoLines[:protoAt], protoRest)
		scheme = append(schemeBuf[:0], protoEntry...)
	}

	if forAt >= 0 {
		var orig [64]byte
		replaceHeader(h, hdrOriginalFor, peer.AppendTo(orig[:0]))
		replaceHeader(h, hdrForwardedFor, forRemain)
		ctx.SetRemoteAddr(newClientAddr(client))
	}
	if applyProto {
		u := ctx.URI()
		replaceHeader(h, hdrOriginalProto, u.Scheme())
		replaceHeader(h, hdrForwardedProt, protoRemain)
		u.SetSchemeBytes(scheme) // lowercases
	}
}

// clientAddr is a net.TCPAddr with room for its IP, so the forwarded
// client address costs one allocation. It is not pooled: the app may keep
// what ctx.RemoteAddr() returns, as it may keep a connection's address.
type clientAddr struct {
	tcp net.TCPAddr
	ip  [16]byte
}

func newClientAddr(ap netip.AddrPort) *net.TCPAddr {
	a := new(clientAddr)
	ip := ap.Addr()
	if ip.Is4() {
		v4 := ip.As4()
		a.tcp.IP = append(a.ip[:0], v4[:]...)
	} else {
		a.ip = ip.As16()
		a.tcp.IP = a.ip[:]
	}
	a.tcp.Port = int(ap.Port())
	a.tcp.Zone = ip.Zone()
	return &a.tcp
}

// replaceHeader sets key to the single value v, or deletes it when v is
// empty. Set alone would leave a client's duplicate lines in place.
func replaceHeader(h *fasthttp.RequestHeader, key string, v []byte) {
	h.Del(key)
	if len(v) > 0 {
		h.SetBytesV(key, v)
	}
}

// lastOfLinesB is lastOfLines for fasthttp's header values.
func lastOfLinesB(lines [][]byte) (at int, rest, entry []byte) {
	for i := len(lines) - 1; i >= 0; i-- {
		if rest, entry, ok := lastEntry(lines[i]); ok {
			return i, rest, entry
		}
	}
	return -1, nil, nil
}

// joinRemaining appends the entries left after consuming the right-most
// one, as a single comma-separated line, to dst.
func joinRemaining(dst []byte, before [][]byte, rest []byte) []byte {
	for _, l := range before {
		if _, _, ok := lastEntry(l); !ok {
			continue
		}
		if len(dst) > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, bytes.Trim(l, ", \t")...)
	}
	if len(rest) > 0 {
		if len(dst) > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, rest...)
	}
	return dst
}

// FastPathBase is PathBase for fasthttp: the stripped prefix as the client
// spelled it, or "".
func FastPathBase(ctx *fasthttp.RequestCtx) string {
	if info, ok := ctx.UserValue(fastInfoKey{}).(*fastInfo); ok {
		return string(info.base)
	}
	return ""
}

// FastClientCertificate is ClientCertificate for fasthttp. Like
// RequestCtx, it must not be called concurrently for one request.
func FastClientCertificate(ctx *fasthttp.RequestCtx) *x509.Certificate {
	info, ok := ctx.UserValue(fastInfoKey{}).(*fastInfo)
	if !ok || len(info.cert) == 0 {
		return nil
	}
	if !info.certDone {
		info.parsed = parseClientCert(string(info.cert), &info.m.log)
		info.certDone = true
	}
	return info.parsed
}
