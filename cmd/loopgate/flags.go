package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/admin"
	"github.com/loopgate/loopgate/internal/logsetup"
)

// serveFlagsHelp is the serve part of --help. TestHelpNamesEveryFlag keeps
// it in step with newServeFlags.
const serveFlagsHelp = `  --listen ADDR            plain HTTP listener, repeatable (default :8080 when
                           neither --listen nor --tls-listen is given)
  --tls-listen ADDR        HTTPS listener, repeatable; needs --tls-cert and --tls-key
  --tls-cert FILE          PEM certificate chain for --tls-listen; re-read on SIGHUP
  --tls-key FILE           PEM private key for --tls-cert; re-read on SIGHUP
  --tls-client-ca FILE     PEM CA bundle: require client certificates signed by it
  --h2=true|false          offer HTTP/2 (ALPN h2) on --tls-listen beside HTTP/1.1; the app is
                           always spoken to in HTTP/1.1 (default true)
  --admin ADDR             /metrics (Prometheus), /status (JSON), /healthz
                           (default 127.0.0.1:9180; empty disables)
  --admin-host NAME        a host name the admin endpoint answers to, repeatable;
                           IP addresses, localhost and the host of --admin always
                           are, other names get 403 (DNS rebinding protection)
  --control PATH           the control socket for loopgate recycle, stop and start
                           (default /run/loopgate/control.sock as root, else
                           $XDG_RUNTIME_DIR/loopgate/control.sock, else
                           $TMPDIR/loopgate-UID/control.sock; empty disables)
  --control-group GROUP    let GROUP's members use the control socket too (mode
                           0660 instead of 0600)
  --accel auto|on|off      eBPF sockmap loopback acceleration (default auto): on
                           refuses to start without it, auto falls back to plain
                           TCP and logs why
  --drain-timeout D        how long SIGTERM waits for in-flight requests (default 30s)
  --shutdown-delay D       on SIGTERM/SIGINT, fail /readyz and /healthz at once but
                           keep accepting and serving for D before the drain
                           starts, while load balancers and Kubernetes endpoints
                           catch up (default 0: drain at once)
  --upgrade-timeout D      how long the new process of a binary upgrade (loopgate
                           upgrade, SIGUSR2) may take to be ready, its apps
                           started, before it is killed and this one serves on
                           (default 2m0s)
  --log-format json|console  (default json unless stderr is a terminal)
  --log-level LEVEL        trace, debug, info, warn or error (default info)
  --log-file FILE          append logs to FILE instead of stderr; SIGUSR1 reopens it
  --access-log=true|false  one info line per request (default true)

  Limits (0 keeps the default shown):
  --max-conns N                 client connections at once, over all listeners;
                                past it the longest-idle keep-alive connection
                                makes room, else new ones wait in the accept
                                queue (default 10000)
  --max-header-bytes N          request line + headers; larger gets 431 (default 16384)
  --header-read-timeout D       time for a client to send its headers; 408 after (default 10s)
  --body-read-timeout D         longest pause while reading a request body (default 1m0s)
  --send-timeout D              longest pause while a client takes a response, or
                                a WebSocket tunnel's bytes: past it the tunnel
                                closes, both sides (default 1m0s)
  --idle-timeout D              closes an idle keep-alive client connection (default 1m15s)
  --backend-connect-timeout D   connect to a backend; retried once (default 2s)
  --backend-max-conns N         connections (= requests at once) per backend process (default 512)
  --backend-queue-timeout D     wait for a free backend connection (an h2c app's:
                                a free stream) before a 503 (default 10s)
  --backend-max-tunnels N       WebSocket tunnels per backend process, apart from
                                --backend-max-conns; past it an upgrade gets 503
                                (default 10000)
  --tunnel-idle-timeout D       closes a WebSocket tunnel, both sides, after this
                                long with no byte either way (default off)
  --backend-idle-timeout D      closes an idle pooled backend connection (default 30s)
  --backend-max-response-header-bytes N
                                backend status line + headers; larger is a 502.3 (default 65536)
`

// serveConfig is the parsed `loopgate serve` command line. The front
// server's flags are bound straight into Front (a limit left at 0 keeps
// fastpath's default); serve adds the Observer.
type serveConfig struct {
	Front        fastpath.Config
	Admin        string
	AdminHosts   []string
	Control      string // "" disables
	ControlGroup string
	// ControlExplicit: --control was given, so a socket in use is an
	// error; the default path in use only costs this serve its socket.
	ControlExplicit bool
	Accel           string
	DrainTimeout    time.Duration
	LogFormat       string
	LogLevel        string
	LogFile         string
	AccessLog       bool
	Apps            []appArg

	// ShutdownDelay is --shutdown-delay: how long a SIGTERM keeps serving
	// with readiness failed before the drain begins (default 0).
	ShutdownDelay time.Duration
	// UpgradeTimeout is --upgrade-timeout; 0 selects defaultUpgradeTimeout.
	UpgradeTimeout time.Duration
}

// defaultUpgradeTimeout is --upgrade-timeout's default.
const defaultUpgradeTimeout = 2 * time.Minute

// upgradeTimeout is --upgrade-timeout with its default applied.
func (c *serveConfig) upgradeTimeout() time.Duration {
	if c.UpgradeTimeout <= 0 {
		return defaultUpgradeTimeout
	}
	return c.UpgradeTimeout
}

// usageError is a command-line mistake: exit 2 with the message and a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// negatedBool is a boolean flag that sets the negation of its field
// (--h2=false sets fastpath.Config.DisableHTTP2).
type negatedBool struct{ v *bool }

func (b negatedBool) IsBoolFlag() bool { return true }
func (b negatedBool) String() string {
	if b.v == nil {
		return "true"
	}
	return strconv.FormatBool(!*b.v)
}
func (b negatedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b.v = !v
	return nil
}

func newServeFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, help by --help
	f := &c.Front
	fs.Var((*stringList)(&f.Listen), "listen", "")
	fs.Var((*stringList)(&f.TLSListen), "tls-listen", "")
	fs.StringVar(&f.TLSCertFile, "tls-cert", "", "")
	fs.StringVar(&f.TLSKeyFile, "tls-key", "", "")
	fs.StringVar(&f.TLSClientCAFile, "tls-client-ca", "", "")
	fs.Var(negatedBool{&f.DisableHTTP2}, "h2", "")
	fs.StringVar(&c.Admin, "admin", "127.0.0.1:9180", "")
	fs.Var((*stringList)(&c.AdminHosts), "admin-host", "")
	fs.StringVar(&c.Control, "control", defaultControlPath(), "")
	fs.StringVar(&c.ControlGroup, "control-group", "", "")
	fs.StringVar(&c.Accel, "accel", "auto", "")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", 0, "")
	fs.DurationVar(&c.UpgradeTimeout, "upgrade-timeout", 0, "")
	fs.StringVar(&c.LogFormat, "log-format", "", "")
	fs.StringVar(&c.LogLevel, "log-level", "info", "")
	fs.StringVar(&c.LogFile, "log-file", "", "")
	fs.BoolVar(&c.AccessLog, "access-log", true, "")
	fs.IntVar(&f.MaxConns, "max-conns", 0, "")
	fs.IntVar(&f.MaxHeaderBytes, "max-header-bytes", 0, "")
	fs.DurationVar(&f.HeaderReadTimeout, "header-read-timeout", 0, "")
	fs.DurationVar(&f.BodyReadTimeout, "body-read-timeout", 0, "")
	fs.DurationVar(&f.SendTimeout, "send-timeout", 0, "")
	fs.DurationVar(&f.IdleTimeout, "idle-timeout", 0, "")
	fs.DurationVar(&f.ConnectTimeout, "backend-connect-timeout", 0, "")
	fs.IntVar(&f.MaxConnsPerBackend, "backend-max-conns", 0, "")
	fs.DurationVar(&f.BackendQueueTimeout, "backend-queue-timeout", 0, "")
	fs.IntVar(&f.MaxTunnelsPerBackend, "backend-max-tunnels", 0, "")
	fs.DurationVar(&f.TunnelIdleTimeout, "tunnel-idle-timeout", 0, "")
	fs.DurationVar(&f.BackendIdleTimeout, "backend-idle-timeout", 0, "")
	fs.IntVar(&f.MaxResponseHeaderBytes, "backend-max-response-header-bytes", 0, "")
	return fs
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (`serve ./app --listen :80` works), stopping at "--".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseServe parses and checks the serve command line. It returns
// flag.ErrHelp for -h/--help and a *usageError for every mistake.
func parseServe(args []string) (*serveConfig, error) {
	c := &serveConfig{}
	fs := newServeFlags(c)
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	if err != nil {
		return nil, usagef("%s", flagError(fs, err))
	}
	fs.Visit(func(fl *flag.Flag) { c.ControlExplicit = c.ControlExplicit || fl.Name == "control" })
	if c.ControlGroup != "" && c.Control == "" {
		return nil, usagef("--control-group needs a --control socket")
	}
	if len(positional) == 0 {
		return nil, usagef("no APP given: name at least one directory that holds a web.config")
	}
	f := &c.Front
	if len(f.Listen) == 0 && len(f.TLSListen) == 0 {
		f.Listen = []string{":8080"}
	}
	for _, group := range []struct {
		flag  string
		addrs []string
	}{{"--listen", f.Listen}, {"--tls-listen", f.TLSListen}} {
		for _, a := range group.addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, usagef("%s %q: want HOST:PORT or :PORT", group.flag, a)
			}
		}
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			return nil, usagef("--admin %q: want HOST:PORT, or empty to disable", c.Admin)
		}
	}
	for _, h := range c.AdminHosts {
		if err := admin.CheckHost(h); err != nil {
			return nil, usagef("--admin-host %q: %v", h, err)
		}
	}
	if len(f.TLSListen) > 0 && (f.TLSCertFile == "" || f.TLSKeyFile == "") {
		return nil, usagef("--tls-listen needs --tls-cert and --tls-key")
	}
	if len(f.TLSListen) == 0 && (f.TLSCertFile != "" || f.TLSKeyFile != "" || f.TLSClientCAFile != "") {
		return nil, usagef("--tls-cert, --tls-key and --tls-client-ca need a --tls-listen address")
	}
	switch c.Accel {
	case "auto", "on", "off":
	default:
		return nil, usagef("--accel %q: want auto, on or off", c.Accel)
	}
	if c.DrainTimeout < 0 {
		return nil, usagef("--drain-timeout %v: must not be negative", c.DrainTimeout)
	}
	if c.UpgradeTimeout < 0 {
		return nil, usagef("--upgrade-timeout %v: must not be negative (0 selects the default)", c.UpgradeTimeout)
	}
	if c.ShutdownDelay < 0 {
		return nil, usagef("--shutdown-delay %v: must not be negative", c.ShutdownDelay)
	}
	if err := checkLimits(f); err != nil {
		return nil, err
	}
	if err := logsetup.CheckFormat(c.LogFormat); err != nil {
		return nil, usagef("%v", strings.TrimPrefix(err.Error(), logsetup.ErrUsage.Error()+": "))
	}
	if _, err := logsetup.ParseLevel(c.LogLevel); err != nil {
		return nil, usagef("%v", strings.TrimPrefix(err.Error(), logsetup.ErrUsage.Error()+": "))
	}
	apps, errs := parseAppArgs(positional)
	if len(errs) > 0 {
		return nil, usagef("%v", errors.Join(errs...))
	}
	c.Apps = apps
	return c, nil
}

// checkLimits rejects negative limits (zero selects the default) with the
// flag's name; fastpath.New would refuse them too, naming the field.
func checkLimits(f *fastpath.Config) error {
	for _, v := range []struct {
		flag string
		neg  bool
	}{
		{"--max-conns", f.MaxConns < 0},
		{"--max-header-bytes", f.MaxHeaderBytes < 0},
		{"--header-read-timeout", f.HeaderReadTimeout < 0},
		{"--body-read-timeout", f.BodyReadTimeout < 0},
		{"--send-timeout", f.SendTimeout < 0},
		{"--idle-timeout", f.IdleTimeout < 0},
		{"--backend-connect-timeout", f.ConnectTimeout < 0},
		{"--backend-max-conns", f.MaxConnsPerBackend < 0},
		{"--backend-queue-timeout", f.BackendQueueTimeout < 0},
		{"--backend-max-tunnels", f.MaxTunnelsPerBackend < 0},
		{"--tunnel-idle-timeout", f.TunnelIdleTimeout < 0},
		{"--backend-idle-timeout", f.BackendIdleTimeout < 0},
		{"--backend-max-response-header-bytes", f.MaxResponseHeaderBytes < 0},
	} {
		if v.neg {
			return usagef("%s: must not be negative (0 selects the default)", v.flag)
		}
	}
	return nil
}
