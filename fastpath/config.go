// The front server's configuration: every field with its default and
// unit, and the validation New applies.

package fastpath

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the front server's configuration. The zero value of every field
// selects its documented default; New fills them in and validates the rest.
// A Config is read once by New and not retained.
type Config struct {
	// Listen holds the plain HTTP listen addresses (`--listen`, repeatable),
	// e.g. ":8080" or "127.0.0.1:8080". Default: none (the CLI supplies
	// ":8080" when neither Listen nor TLSListen is given).
	Listen []string
	// TLSListen holds the HTTPS listen addresses (`--tls-listen`). They need
	// TLSCertFile and TLSKeyFile. Default: none.
	TLSListen []string
	// TLSCertFile and TLSKeyFile are the PEM certificate chain and key served
	// on TLSListen (`--tls-cert`, `--tls-key`). Server.ReloadCertificates
	// re-reads them (SIGHUP) without dropping connections.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile is a PEM bundle of CAs (`--tls-client-ca`). When set,
	// TLS listeners ask for a client certificate, accept connections without
	// one, refuse one that does not verify, and forward a verified one to
	// the app as MS-ASPNETCORE-CLIENTCERT. Default: no client certificates.
	TLSClientCAFile string
	// ListenFunc binds each Listen and TLSListen address (network "tcp").
	// Default net.Listen; loopgate's binary upgrade passes one that hands
	// over the listening sockets of the process it replaces.
	ListenFunc func(network, addr string) (net.Listener, error)

	// MaxHeaderBytes bounds the request line plus header block; a larger one
	// gets 431. Default 16 KiB (HAProxy's default buffer). Unit: bytes.
	MaxHeaderBytes int
	// HeaderReadTimeout bounds how long a client may take to send a request's
	// line and headers, counted from the connection's accept (first request)
	// or from the request's first byte (keep-alive). Protects against slow
	// clients; such a client gets 408 and is disconnected. Default 10 s.
	HeaderReadTimeout time.Duration
	// BodyReadTimeout is the inactivity timeout while reading a request body
	// from the client: the longest wait for the next bytes, not a deadline
	// for the whole upload (nginx client_body_timeout). Default 60 s.
	BodyReadTimeout time.Duration
	// SendTimeout is the inactivity timeout while writing a response to the
	// client: a client that accepts no bytes for this long is disconnected
	// (nginx send_timeout). Default 60 s.
	SendTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection that sends no new
	// request for this long. Default 75 s (nginx keepalive_timeout).
	IdleTimeout time.Duration
	// MaxConns bounds concurrent client connections over all listeners.
	// Past it, the keep-alive connection idle longest is closed to admit a
	// new one (nginx does the same); with none idle, new connections wait in
	// the kernel's accept queue (HAProxy maxconn). Default 10000.
	MaxConns int

	// ConnectTimeout bounds a connect to a backend on loopback. A refused or
	// timed-out connect lets the supervisor check the process and is retried
	// once. Default 2 s.
	ConnectTimeout time.Duration
	// MaxConnsPerBackend bounds the keep-alive pool to one backend process:
	// the most requests that process sees at once. With Sockmap, uploads
	// of known length that bypass it (sockmap.go: larger than its
	// QueueLimit minus 128 KiB with the default header limits) have a pool
	// of their own with the same bound. Default 512.
	MaxConnsPerBackend int
	// MaxTunnelsPerBackend bounds the WebSocket tunnels open at once to one
	// backend process. A tunnel leaves MaxConnsPerBackend's pool once the
	// backend answered 101 (it holds a connection of its own, not a request
	// slot); past this bound the upgrade gets 503 at once and the backend's
	// connection is closed. Default 10000 (a SignalR app holds one per
	// user; --max-conns bounds the clients anyway).
	MaxTunnelsPerBackend int
	// TunnelIdleTimeout closes a WebSocket tunnel, both sides, after this
	// long without a byte either way (nginx proxy_read_timeout, HAProxy
	// timeout tunnel). Default 0: off, a tunnel lasts while both sides keep
	// it open (WebSocket pings keep it busy).
	TunnelIdleTimeout time.Duration
	// BackendQueueTimeout is how long a request waits for a free pooled
	// connection when MaxConnsPerBackend are busy (for an h2c app, a free
	// stream when every connection is at the app's stream limit) before
	// it gets a bare 503. Default 10 s.
	BackendQueueTimeout time.Duration
	// BackendIdleTimeout closes pooled backend connections idle this long,
	// well below Kestrel's 130 s keep-alive so a pooled connection is rarely
	// stale. Default 30 s.
	BackendIdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds a backend's status line plus headers
	// (the reference's WinHTTP limit); a larger one is a 502.3. It is also
	// the read buffer per in-flight request. Default 64 KiB.
	MaxResponseHeaderBytes int

	// Observer, if not nil, is told about every finished request (metrics,
	// access log). Default: none.
	Observer Observer

	// Sockmap, if not nil, is the eBPF sockmap fast path the backend
	// connections take (loopgate passes its *bpf.Accel): a body larger
	// than its QueueLimit minus 128 KiB (with the default header limits)
	// keeps off its redirection (sockmap.go: a response's backend
	// connection is released from it and closed after the body, an upload
	// takes a pool of its own).
	// Default: none (plain loopback TCP).
	Sockmap Sockmap

	// DisableHTTP2 makes TLS listeners offer only http/1.1 in ALPN
	// (`--h2=false`). By default they offer h2 too, and HTTP/2 connections
	// are served by the standard library's HTTP/2 server (net/http) with
	// the same forwarding (see h2.go).
	DisableHTTP2 bool

	// HTTP2MaxConcurrentStreams bounds the streams one HTTP/2 connection
	// may have open at once. Default 250.
	HTTP2MaxConcurrentStreams int
}

const (
	defaultMaxHeaderBytes         = 16 << 10
	defaultHeaderReadTimeout      = 10 * time.Second
	defaultBodyReadTimeout        = 60 * time.Second
	defaultSendTimeout            = 60 * time.Second
	defaultIdleTimeout            = 75 * time.Second
	defaultMaxConns               = 10000
	defaultConnectTimeout         = 2 * time.Second
	defaultMaxConnsPerBackend     = 512
	defaultMaxTunnelsPerBackend   = 10000
	defaultBackendQueueTimeout    = 10 * time.Second
	defaultBackendIdleTimeout     = 30 * time.Second
	defaultMaxResponseHeaderBytes = 64 << 10
	defaultHTTP2MaxStreams        = 250
)

// Defaults is the Config that New makes of a zero Config: no listeners and
// every limit at its default. The CLI's --help shows these values.
func Defaults() Config {
	c, _ := (&Config{}).withDefaults() // a zero Config has nothing to reject
	return c
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid fastpath configuration")

func (c *Config) withDefaults() (Config, error) {
	out := *c
	setInt := func(v *int, def int, name string) error {
		if *v < 0 {
			return fmt.Errorf("%w: %s=%d: must not be negative", ErrConfig, name, *v)
		}
		if *v == 0 {
			*v = def
		}
		return nil
	}
	setDur := func(v *time.Duration, def time.Duration, name string) error {
		if *v < 0 {
			return fmt.Errorf("%w: %s=%v: must not be negative", ErrConfig, name, *v)
		}
		if *v == 0 {
			*v = def
		}
		return nil
	}
	for _, err := range []error{
		setInt(&out.MaxHeaderBytes, defaultMaxHeaderBytes, "MaxHeaderBytes"),
		setDur(&out.HeaderReadTimeout, defaultHeaderReadTimeout, "HeaderReadTimeout"),
		setDur(&out.BodyReadTimeout, defaultBodyReadTimeout, "BodyReadTimeout"),
		setDur(&out.SendTimeout, defaultSendTimeout, "SendTimeout"),
		setDur(&out.IdleTimeout, defaultIdleTimeout, "IdleTimeout"),
		setInt(&out.MaxConns, defaultMaxConns, "MaxConns"),
		setDur(&out.ConnectTimeout, defaultConnectTimeout, "ConnectTimeout"),
		setInt(&out.MaxConnsPerBackend, defaultMaxConnsPerBackend, "MaxConnsPerBackend"),
		setInt(&out.MaxTunnelsPerBackend, defaultMaxTunnelsPerBackend, "MaxTunnelsPerBackend"),
		setDur(&out.TunnelIdleTimeout, 0, "TunnelIdleTimeout"),
		setDur(&out.BackendQueueTimeout, defaultBackendQueueTimeout, "BackendQueueTimeout"),
		setDur(&out.BackendIdleTimeout, defaultBackendIdleTimeout, "BackendIdleTimeout"),
		setInt(&out.MaxResponseHeaderBytes, defaultMaxResponseHeaderBytes, "MaxResponseHeaderBytes"),
		setInt(&out.HTTP2MaxConcurrentStreams, defaultHTTP2MaxStreams, "HTTP2MaxConcurrentStreams"),
	} {
		if err != nil {
			return out, err
		}
	}
	if out.MaxHeaderBytes < 1024 {
		return out, fmt.Errorf("%w: MaxHeaderBytes=%d: below 1024", ErrConfig, out.MaxHeaderBytes)
	}
	if out.MaxResponseHeaderBytes < 1024 {
		return out, fmt.Errorf("%w: MaxResponseHeaderBytes=%d: below 1024", ErrConfig, out.MaxResponseHeaderBytes)
	}
	if len(out.TLSListen) > 0 && (out.TLSCertFile == "" || out.TLSKeyFile == "") {
		return out, fmt.Errorf("%w: TLS listeners %v need both a certificate and a key file", ErrConfig, out.TLSListen)
	}
	if len(out.TLSListen) == 0 && (out.TLSCertFile != "" || out.TLSKeyFile != "" || out.TLSClientCAFile != "") {
		return out, fmt.Errorf("%w: TLS certificate, key or client CA given without a TLS listener", ErrConfig)
	}
	return out, nil
}
