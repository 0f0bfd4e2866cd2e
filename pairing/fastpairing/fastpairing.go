// Package fastpairing is the fasthttp flavour of pairing's app-side
// middleware: the same hosting contract, rules and order as
// pairing.Config.Middleware, for Go backends built on fasthttp. It lives in
// its own package so the supervisor, which uses pairing.NewToken, does not
// depend on fasthttp. Its tests share one table with the net/http flavour,
// in the pairing package.
package fastpairing

import (
	"bytes"
	"crypto/x509"
	"net"
	"net/netip"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/internal/hosting"
)

// Middleware is pairing.Config.Middleware for fasthttp: when c is Hosted,
// the same steps in the same order (path base, forwarded headers from a
// loopback peer, token check with 400, shutdown request with 202 and
// Options.Stop); otherwise next unchanged. The results live in the
// RequestCtx: ctx.RemoteAddr() is the client, ctx.URI().Scheme() the
// forwarded scheme, ctx.Path() the path without the base (ctx.RequestURI()
// keeps the original target); PathBase and ClientCertificate read the rest.
//
// It expects the server's default header-name normalization
// (DisableHeaderNamesNormalizing false). Options.Stop runs when fasthttp
// releases the shutdown request, after the 202 is written; a handler driven
// outside fasthttp.Server must call ctx.Request.Reset() for that to happen.
// The returned middleware is safe for concurrent use; a request that needs
// no path base and carries no client certificate allocates nothing in it.
func Middleware(c pairing.Config, opts pairing.Options) func(fasthttp.RequestHandler) fasthttp.RequestHandler {
	if !c.Hosted() {
		return func(next fasthttp.RequestHandler) fasthttp.RequestHandler { return next }
	}
	m := &mw{hosting.New(c.Token, c.ApplPath, opts.Stop, opts.Log)}
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) { m.serve(next, ctx) }
	}
}

// reqInfo is what the middleware records for one fasthttp request. It is
// stored as a user value, so fasthttp calls Close once the response is
// written, which recycles it (and starts Stop for a shutdown request).
// Nothing outside this package sees it: the accessors return copies.
type reqInfo struct {
	m        *hosting.Core
	base     []byte
	cert     []byte
	parsed   *x509.Certificate
	certDone bool
	shutdown bool
}

type infoKey struct{}

var infoPool = sync.Pool{New: func() any { return new(reqInfo) }}

// mw is the fasthttp flavour's view of the shared state.
type mw struct{ *hosting.Core }

func (m mw) acquireInfo() *reqInfo {
	info := infoPool.Get().(*reqInfo)
	info.m = m.Core
	return info
}

// Close implements io.Closer for fasthttp's user-value cleanup.
func (info *reqInfo) Close() error {
	if info.shutdown {
		info.m.TriggerStop()
	}
	*info = reqInfo{base: info.base[:0], cert: info.cert[:0]}
	infoPool.Put(info)
	return nil
}

var (
	shutdownPath  = []byte(hosting.ShutdownPath)
	shutdownEvent = []byte(hosting.ShutdownEvent)
)

func (m mw) serve(next fasthttp.RequestHandler, ctx *fasthttp.RequestCtx) {
	var info *reqInfo
	if m.Base != "" {
		if p := ctx.Path(); hasPathBase(p, m.BaseBytes) {
			info = m.acquireInfo()
			info.base = append(info.base, p[:len(m.BaseBytes)]...)
			setPath(ctx.URI(), p[len(m.BaseBytes):])
		}
	}
	m.forward(ctx)

	h := &ctx.Request.Header
	vals := h.PeekAll(hosting.HdrToken)
	if verdict, got := hosting.CheckToken(m.Core, vals); verdict != hosting.TokenOK {
		if e := m.Log.Error(); e.Enabled() {
			hosting.LogRejected(e, verdict, string(got), len(vals), string(ctx.Method()), string(ctx.Path()), ctx.RemoteAddr().String())
		}
		if info != nil {
			info.Close()
		}
		emptyAnswer(ctx, fasthttp.StatusBadRequest)
		return
	}
	h.Del(hosting.HdrToken)

	if ctx.IsPost() && bytes.EqualFold(ctx.Path(), shutdownPath) {
		if ev := h.PeekAll(hosting.HdrEvent); len(ev) == 1 && bytes.EqualFold(ev[0], shutdownEvent) {
			m.LogShutdown(ctx.RemoteAddr().String())
			emptyAnswer(ctx, fasthttp.StatusAccepted)
			if info == nil {
				info = m.acquireInfo()
			}
			info.shutdown = true
			ctx.SetUserValue(infoKey{}, info)
			return
		}
	}

	if cert := h.Peek(hosting.HdrClientCert); len(cert) > 0 {
		if info == nil {
			info = m.acquireInfo()
		}
		info.cert = append(info.cert, cert...)
	}
	if info != nil {
		ctx.SetUserValue(infoKey{}, info)
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

// setPath makes rest, a piece of the decoded, normalized path, the new
// path. SetPathBytes decodes its argument again, so '%' is re-encoded; the
// path is already normalized, so normalizing again changes nothing else.
func setPath(u *fasthttp.URI, rest []byte) {
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

// forward is step 2, as in the net/http flavour. Header values are copied out
// before the first header is modified, because fasthttp reuses the storage
// of deleted headers.
func (m mw) forward(ctx *fasthttp.RequestCtx) {
	tcp, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	peer := tcp.AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !hosting.TrustedPeer(peer.Addr()) {
		return
	}
	h := &ctx.Request.Header

	var forBuf [128]byte
	var forRemain []byte
	var client netip.AddrPort
	forLines := h.PeekAll(hosting.HdrForwardedFor)
	forAt, forRest, forEntry := hosting.LastOfLines(forLines)
	if forAt >= 0 {
		if client, ok = hosting.ParseEndpoint(string(forEntry)); !ok {
			return // as ForwardedHeadersMiddleware: stop at an unparsable address
		}
		forRemain = joinRemaining(forBuf[:0], forLines[:forAt], forRest)
	}

	var protoBuf [64]byte
	var schemeBuf [16]byte
	var protoRemain, scheme []byte
	protoLines := h.PeekAll(hosting.HdrForwardedProt) // reuses the slice PeekAll returned above
	protoAt, protoRest, protoEntry := hosting.LastOfLines(protoLines)
	applyProto := protoAt >= 0 && hosting.ValidScheme(protoEntry)
	if applyProto {
		protoRemain = joinRemaining(protoBuf[:0], protoLines[:protoAt], protoRest)
		scheme = append(schemeBuf[:0], protoEntry...)
	}

	if forAt >= 0 {
		var orig [64]byte
		replaceHeader(h, hosting.HdrOriginalFor, peer.AppendTo(orig[:0]))
		replaceHeader(h, hosting.HdrForwardedFor, forRemain)
		ctx.SetRemoteAddr(newClientAddr(client))
	}
	if applyProto {
		u := ctx.URI()
		replaceHeader(h, hosting.HdrOriginalProto, u.Scheme())
		replaceHeader(h, hosting.HdrForwardedProt, protoRemain)
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

// joinRemaining appends the entries left after consuming the right-most
// one, as a single comma-separated line, to dst.
func joinRemaining(dst []byte, before [][]byte, rest []byte) []byte {
	for _, l := range before {
		if _, _, ok := hosting.LastEntry(l); !ok {
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

// PathBase is pairing.PathBase for fasthttp: the prefix the middleware
// stripped, spelled as the client sent it, or "".
func PathBase(ctx *fasthttp.RequestCtx) string {
	if info, ok := ctx.UserValue(infoKey{}).(*reqInfo); ok {
		return string(info.base)
	}
	return ""
}

// ClientCertificate is pairing.ClientCertificate for fasthttp: the
// certificate from MS-ASPNETCORE-CLIENTCERT of a request that passed the
// token check, decoded on the first call, or nil. Like RequestCtx, it must
// not be called concurrently for one request.
func ClientCertificate(ctx *fasthttp.RequestCtx) *x509.Certificate {
	info, ok := ctx.UserValue(infoKey{}).(*reqInfo)
	if !ok || len(info.cert) == 0 {
		return nil
	}
	if !info.certDone {
		info.parsed = hosting.ParseClientCert(string(info.cert), &info.m.Log)
		info.certDone = true
	}
	return info.parsed
}
