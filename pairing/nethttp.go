package pairing

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/pairing/internal/hosting"
)

// Options tunes the middleware. The zero value is ready to use.
type Options struct {
	// Stop starts the app's graceful shutdown when loopgate asks for it with
	// POST {APPL_PATH}/iisintegration. It is called at most once per
	// middleware, in its own goroutine, after the 202 answer has been
	// written, so it may block (http.Server.Shutdown is the usual choice).
	// Nil sends SIGTERM to this process instead: an app that already shuts
	// down gracefully on SIGTERM needs no wiring, and one that does not ends
	// as it would when loopgate signals it.
	Stop func()
	// Log receives rejected requests (error level), the shutdown request
	// (info) and unreadable client certificates (warn). The zero Logger
	// discards everything. The expected token is never logged.
	Log zerolog.Logger
}

// Middleware returns net/http middleware that gives the app the hosting
// contract of ASP.NET Core's IIS integration (ancm-spec.md §6). When c is
// not Hosted it returns next unchanged. Otherwise, per request, in the
// reference's order:
//
//  1. Path base: a path that starts with APPL_PATH (case-insensitively, on a
//     segment boundary) loses that prefix in r.URL (Path and RawPath),
//     which PathBase then returns; an empty remainder becomes "/"; r.RequestURI
//     keeps the original target. Other paths pass with an empty base.
//  2. Forwarded headers, only from a loopback peer: the right-most
//     X-Forwarded-For entry becomes r.RemoteAddr and the right-most
//     X-Forwarded-Proto entry (lowercased) r.URL.Scheme; each consumed
//     entry is removed from its header (the header is deleted when empty)
//     and the previous values are kept in X-Original-For/X-Original-Proto.
//     An X-Forwarded-For entry that is not an address stops this step.
//  3. MS-ASPNETCORE-TOKEN must be present once and equal the token
//     (constant-time); otherwise 400 with an empty body and an error log.
//     The header is removed from requests that pass, so the app cannot
//     leak it.
//  4. POST /iisintegration (after the path base, any case) with
//     MS-ASPNETCORE-EVENT: shutdown (any case) answers 202 with an empty
//     body and calls Options.Stop; the app does not see it.
//
// The request is rewritten in place. Scheme, PathBase and ClientCertificate
// read the results. fastpairing.Middleware is the same for fasthttp. The returned middleware is safe for concurrent use.
func (c Config) Middleware(opts Options) func(http.Handler) http.Handler {
	if !c.Hosted() {
		return func(next http.Handler) http.Handler { return next }
	}
	m := &mw{hosting.New(c.Token, c.ApplPath, opts.Stop, opts.Log)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serveHTTP(next, w, r)
		})
	}
}

// reqInfo is what the middleware records for one request; it lives in the
// request's context.
type reqInfo struct {
	pathBase string
	cert     string // MS-ASPNETCORE-CLIENTCERT as received
	log      *zerolog.Logger
	once     sync.Once
	parsed   *x509.Certificate
}

type reqInfoKey struct{}

// mw is the net/http flavour's view of the shared state.
type mw struct{ *hosting.Core }

func (m mw) serveHTTP(next http.Handler, w http.ResponseWriter, r *http.Request) {
	base := m.stripPathBase(r)
	m.forward(r)

	vals := r.Header[hosting.HdrToken]
	if verdict, got := hosting.CheckToken(m.Core, vals); verdict != hosting.TokenOK {
		if e := m.Log.Error(); e.Enabled() {
			hosting.LogRejected(e, verdict, got, len(vals), r.Method, r.URL.Path, r.RemoteAddr)
		}
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	delete(r.Header, hosting.HdrToken)

	if r.Method == http.MethodPost && strings.EqualFold(r.URL.Path, hosting.ShutdownPath) {
		if ev := r.Header[hosting.HdrEvent]; len(ev) == 1 && strings.EqualFold(ev[0], hosting.ShutdownEvent) {
			m.LogShutdown(r.RemoteAddr)
			w.Header()["Content-Length"] = []string{"0"}
			w.WriteHeader(http.StatusAccepted)
			// Flush so the 202 is on the wire before Stop can end the process.
			http.NewResponseController(w).Flush() //nolint:errcheck // the client may be gone; stop anyway
			m.TriggerStop()
			return
		}
	}

	if cert := r.Header.Get(hosting.HdrClientCert); base != "" || cert != "" {
		info := &reqInfo{pathBase: base, cert: cert, log: &m.Log}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	}
	next.ServeHTTP(w, r)
}

// stripPathBase applies step 1 and returns the matched base, as the client
// spelled it.
func (m mw) stripPathBase(r *http.Request) string {
	if m.Base == "" {
		return ""
	}
	p := r.URL.Path
	n := len(m.Base)
	if len(p) < n || !strings.EqualFold(p[:n], m.Base) || len(p) > n && p[n] != '/' {
		return ""
	}
	base := p[:n]
	r.URL.Path = p[n:]
	if r.URL.Path == "" {
		r.URL.Path = "/"
	}
	r.URL.RawPath = stripRawBase(r.URL.RawPath, base)
	return base
}

// stripRawBase removes from an encoded path the prefix that decodes to
// base. RawPath is only a hint to url.URL (EscapedPath ignores one that
// does not match Path), so when no prefix matches it is dropped.
func stripRawBase(raw, base string) string {
	if raw == "" {
		return ""
	}
	for i := 1; i <= len(raw); i++ {
		if i < len(raw) && raw[i] != '/' {
			continue
		}
		if dec, err := url.PathUnescape(raw[:i]); err == nil && dec == base {
			if i == len(raw) {
				return ""
			}
			return raw[i:]
		}
	}
	return ""
}

// forward applies step 2.
func (m mw) forward(r *http.Request) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !hosting.TrustedPeer(peer.Addr()) {
		return
	}
	forLines := r.Header[hosting.HdrForwardedFor]
	forAt, forRest, forEntry := hosting.LastOfLines(forLines)
	var client netip.AddrPort
	if forAt >= 0 {
		var ok bool
		if client, ok = hosting.ParseEndpoint(forEntry); !ok {
			return // as ForwardedHeadersMiddleware: stop at an unparsable address
		}
	}
	protoLines := r.Header[hosting.HdrForwardedProt]
	protoAt, protoRest, protoEntry := hosting.LastOfLines(protoLines)

	if forAt >= 0 {
		r.Header[hosting.HdrOriginalFor] = []string{r.RemoteAddr}
		truncateLines(r.Header, hosting.HdrForwardedFor, forLines, forAt, forRest)
		r.RemoteAddr = client.String()
	}
	if protoAt >= 0 && hosting.ValidScheme(protoEntry) {
		r.Header[hosting.HdrOriginalProto] = []string{Scheme(r)}
		truncateLines(r.Header, hosting.HdrForwardedProt, protoLines, protoAt, protoRest)
		r.URL.Scheme = strings.ToLower(protoEntry)
	}
}

// truncateLines removes the consumed entry: line at becomes rest, the
// entry-less lines after it go, and the header goes when nothing is left.
func truncateLines(h http.Header, key string, lines []string, at int, rest string) {
	lines = lines[:at]
	if rest != "" {
		lines = append(lines, rest)
	}
	if len(lines) == 0 {
		delete(h, key)
		return
	}
	h[key] = lines
}

// Scheme returns the request's scheme as the app should see it: the one
// taken from X-Forwarded-Proto by the middleware, otherwise "https" on a
// TLS connection and "http" else. r.TLS stays nil for forwarded HTTPS.
func Scheme(r *http.Request) string {
	if r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// PathBase returns the part of the path the middleware stripped, spelled
// as the client sent it ("/PathBase" for APPL_PATH "/pathbase"), or "" for
// an app at "/", a request outside the path base, or no middleware.
func PathBase(r *http.Request) string {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return info.pathBase
	}
	return ""
}

// ClientCertificate returns the TLS client certificate loopgate received,
// from MS-ASPNETCORE-CLIENTCERT (base64 DER), or nil when there is none.
// Only requests that passed the middleware's token check have one: the
// header is never trusted on its own. It is decoded on the first call; a
// value that does not decode is logged as a warning and gives nil.
func ClientCertificate(r *http.Request) *x509.Certificate {
	info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo)
	if !ok || info.cert == "" {
		return nil
	}
	info.once.Do(func() { info.parsed = hosting.ParseClientCert(info.cert, info.log) })
	return info.parsed
}
