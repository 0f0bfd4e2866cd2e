package main

import (
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/status"
)

func runCapture(args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := run(args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpNamesEveryFlag keeps --help and the flags in step, and checks the
// defaults that DESIGN.md §1 fixes.
func TestHelpNamesEveryFlag(t *testing.T) {
	defined := map[string]bool{}
	newServeFlags(&serveConfig{}).VisitAll(func(f *flag.Flag) { defined[f.Name] = true })
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(serveFlagsHelp, -1) {
		documented[m[1]] = true
	}
	if !reflect.DeepEqual(defined, documented) {
		t.Errorf("serve flags defined %v, documented in --help %v", defined, documented)
	}
	code, out, _ := runCapture("--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{
		"loopgate serve [flags] APP...", "loopgate check APP...", "loopgate status [--admin ADDR] [--json]", "loopgate version",
		"VPATH=DIR", "(default :8080", "(default 127.0.0.1:9180; empty disables)", "(default auto)",
		"(default 30s)", "(default json unless stderr is a terminal)", "(default info)",
		"SIGTERM, SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1",
		"0 after a clean stop, 1 on a runtime failure, 2 on a usage or\nconfiguration error",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// serve --help has serve's part of it (TestSubcommandHelp).
	if code, out2, _ := runCapture("serve", "--help"); code != 0 || !strings.Contains(out2, serveFlagsHelp) || !strings.Contains(out, serveFlagsHelp) {
		t.Errorf("serve --help: exit %d, or the serve flags are not in both helps", code)
	}
}

func TestCommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"version", "extra"}, {"serve"}, {"serve", "--nope", "."},
		{"status", "--nope"}, {"status", "extra"}, {"status", "--admin", "nohostport"}} {
		code, out, errText := runCapture(args...)
		if code != exitUsage || errText == "" || out != "" {
			t.Errorf("loopgate %q: exit %d, stdout %q, stderr %q; want 2 with a message on stderr", args, code, out, errText)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCapture("version")
	if code != 0 || !strings.HasPrefix(out, "loopgate "+version+" (go") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestParseServeDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := parseServe([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	want := &serveConfig{Front: fastpath.Config{Listen: []string{":8080"}}, Admin: "127.0.0.1:9180", Accel: "auto", DrainTimeout: 30 * time.Second,
		LogLevel: "info", AccessLog: true, Apps: []appArg{{arg: dir, vpath: "/", dir: dir}}, Control: defaultControlPath()}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parseServe(%q) =\n%+v\nwant\n%+v", dir, c, want)
	}
}

func TestParseServeInterspersed(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	c, err := parseServe([]string{a, "--listen", "127.0.0.1:1", "/api=" + b, "-listen=[::1]:2", "--access-log=false",
		"--admin=", "--drain-timeout", "5s", "--accel", "off", "--log-format", "console", "--log-level", "debug",
		"--tls-listen", ":443", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem", "--h2=false",
		"--max-conns", "5", "--max-header-bytes", "4096", "--header-read-timeout", "1s", "--body-read-timeout", "2s",
		"--send-timeout", "3s", "--idle-timeout", "4s", "--backend-connect-timeout", "5s", "--backend-max-conns", "6",
		"--backend-queue-timeout", "7s", "--backend-idle-timeout", "8s", "--backend-max-response-header-bytes", "9000",
		"--control", "/run/x.sock", "--control-group", "adm"})
	if err != nil {
		t.Fatal(err)
	}
	want := &serveConfig{Front: fastpath.Config{Listen: []string{"127.0.0.1:1", "[::1]:2"}, TLSListen: []string{":443"}, TLSCertFile: "c.pem", TLSKeyFile: "k.pem",
		TLSClientCAFile: "ca.pem", DisableHTTP2: true, MaxConns: 5, MaxHeaderBytes: 4096, HeaderReadTimeout: time.Second, BodyReadTimeout: 2 * time.Second,
		SendTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second, ConnectTimeout: 5 * time.Second, MaxConnsPerBackend: 6,
		BackendQueueTimeout: 7 * time.Second, BackendIdleTimeout: 8 * time.Second, MaxResponseHeaderBytes: 9000},
		Admin: "", Accel: "off", DrainTimeout: 5 * time.Second, LogFormat: "console", LogLevel: "debug", AccessLog: false,
		Apps:    []appArg{{arg: a, vpath: "/", dir: a}, {arg: "/api=" + b, vpath: "/api", dir: b}},
		Control: "/run/x.sock", ControlGroup: "adm", ControlExplicit: true}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	// Only --tls-listen: no plain listener is added behind the user's back.
	c, err = parseServe([]string{a, "--tls-listen", ":443", "--tls-cert", "c", "--tls-key", "k"})
	if err != nil || len(c.Front.Listen) != 0 {
		t.Errorf("TLS only: listen %v, %v", c.Front.Listen, err)
	}
	// After "--" everything is an APP, even what looks like a flag.
	c, err = parseServe([]string{"--", "--listen"})
	if err != nil || len(c.Apps) != 1 || c.Apps[0].arg != "--listen" || !reflect.DeepEqual(c.Front.Listen, []string{":8080"}) {
		t.Errorf(`"-- --listen": %+v, %v`, c, err)
	}
}

func TestParseServeErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "no APP given"},
		{[]string{dir, "--listen", "8080"}, `--listen "8080": want HOST:PORT`},
		{[]string{dir, "--admin", "localhost"}, `--admin "localhost"`},
		{[]string{dir, "--lisen", ":80"}, "unknown flag --lisen: did you mean --listen?"},
		{[]string{dir, "-drain-timout", "1s"}, "unknown flag --drain-timout: did you mean --drain-timeout?"},
		{[]string{dir, "--admin-host", "loopgate:9180"}, `--admin-host "loopgate:9180": want a host name such as loopgate.internal, without a port`},
		{[]string{dir, "--tls-listen", ":443"}, "--tls-listen needs --tls-cert and --tls-key"},
		{[]string{dir, "--tls-cert", "c.pem"}, "need a --tls-listen address"},
		{[]string{dir, "--accel", "yes"}, `--accel "yes": want auto, on or off`},
		{[]string{dir, "--drain-timeout", "-1s"}, "must not be negative"},
		{[]string{dir, "--drain-timeout", "soon"}, "drain-timeout"},
		{[]string{dir, "--log-format", "xml"}, `--log-format "xml": want json or console`},
		{[]string{dir, "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{dir, "--max-conns", "-1"}, "--max-conns: must not be negative"},
		{[]string{dir, "--backend-queue-timeout", "-1s"}, "--backend-queue-timeout: must not be negative"},
		{[]string{dir, dir}, "virtual path / is already used"},
		{[]string{"/api=" + dir, "/api/=" + dir}, "virtual path /api is already used"},
		{[]string{"api=" + dir}, `must start with "/"`},
		{[]string{"/a/../b=" + dir}, `".." segments`},
		{[]string{"/api="}, "no directory"},
	} {
		_, err := parseServe(c.args)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseServe(%q) = %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
	if _, err := parseServe([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestStatusCommand(t *testing.T) {
	snap := status.Snapshot{Version: "v7", UptimeSeconds: 61, Listeners: []status.Listener{{Addr: "127.0.0.1:8080"}},
		Acceleration: status.Accel{Mode: "off"},
		Apps: []status.App{{Name: "/", VirtualPath: "/", Dir: "/srv/hello", State: "ready", Starts: 1,
			Processes: []status.Process{{PID: 321, Port: 4567, State: "ready", Started: time.Now(), UptimeSeconds: 30, Requests: 9}}}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(snap)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, out, errText := runCapture("status", "--admin", addr)
	if code != 0 {
		t.Fatalf("status: exit %d, %s", code, errText)
	}
	for _, want := range []string{"loopgate v7, up 1m1s, serving", "http://127.0.0.1:8080", "/srv/hello", "321", "4567", "30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCapture("status", "--json", "--admin="+addr)
	var got status.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Apps[0].Processes[0].PID != 321 {
		t.Errorf("status --json: exit %d, %q", code, out)
	}
}

func TestStatusUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, out, errText := runCapture("status", "--admin", addr)
	if code != exitFailure || out != "" || !strings.Contains(errText, "is `loopgate serve` running with --admin "+addr) {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %q", code, out, errText)
	}
}

// TestHelpLimitDefaultsAreFastpaths: the limit defaults --help shows are
// the ones fastpath applies for a 0 flag, so the two cannot drift apart.
func TestHelpLimitDefaultsAreFastpaths(t *testing.T) {
	d := fastpath.Defaults()
	for flagName, want := range map[string]string{
		"max-conns":                         strconv.Itoa(d.MaxConns),
		"max-header-bytes":                  strconv.Itoa(d.MaxHeaderBytes),
		"header-read-timeout":               d.HeaderReadTimeout.String(),
		"body-read-timeout":                 d.BodyReadTimeout.String(),
		"send-timeout":                      d.SendTimeout.String(),
		"idle-timeout":                      d.IdleTimeout.String(),
		"backend-connect-timeout":           d.ConnectTimeout.String(),
		"backend-max-conns":                 strconv.Itoa(d.MaxConnsPerBackend),
		"backend-queue-timeout":             d.BackendQueueTimeout.String(),
		"backend-max-tunnels":               strconv.Itoa(d.MaxTunnelsPerBackend),
		"backend-idle-timeout":              d.BackendIdleTimeout.String(),
		"backend-max-response-header-bytes": strconv.Itoa(d.MaxResponseHeaderBytes),
	} {
		// The flag's entry runs to the next flag's line.
		m := regexp.MustCompile(`\n  --` + flagName + ` (?:[^\n]|\n {4,})*?\(default ([^)]*)\)`).FindStringSubmatch(serveFlagsHelp)
		if m == nil {
			t.Errorf("--help shows no default for --%s", flagName)
			continue
		}
		if m[1] != want {
			t.Errorf("--help says --%s defaults to %s; fastpath uses %s", flagName, m[1], want)
		}
	}
}

// TestStatusHelpIsItsOwn: `loopgate status --help` explains status, not
// every command's flags.
func TestStatusHelpIsItsOwn(t *testing.T) {
	code, out, _ := runCapture("status", "--help")
	if code != 0 || !strings.HasPrefix(out, "usage: loopgate status [--admin ADDR] [--json]\n") ||
		!strings.Contains(out, "--json           print the /status JSON document") || strings.Contains(out, "--listen") {
		t.Errorf("status --help: exit %d:\n%s", code, out)
	}
}

func TestUnknownFlagSuggestion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--jsno"}, "loopgate status: unknown flag --jsno: did you mean --json?\n"},
		{[]string{"status", "-Admin", "x"}, "loopgate status: unknown flag --Admin: did you mean --admin?\n"},
		{[]string{"status", "--verbose"}, "loopgate status: unknown flag --verbose\n"},
	} {
		code, _, errText := runCapture(c.args...)
		if code != exitUsage || !strings.HasPrefix(errText, c.want) {
			t.Errorf("%q: exit %d, stderr %q, want it to start with %q", c.args, code, errText, c.want)
		}
	}
}

// TestSubcommandHelp: each subcommand's --help is its own.
func TestSubcommandHelp(t *testing.T) {
	for _, c := range []struct {
		cmd         string
		start, lack string
	}{
		{"serve", "usage: loopgate serve [flags] APP...\n", "status flags"},
		{"check", "usage: loopgate check APP...\n", "--listen"},
		{"status", "usage: loopgate status [--admin ADDR] [--json]\n", "--listen"},
		{"version", "usage: loopgate version\n", "--"},
		{"recycle", "usage: loopgate recycle [--control PATH] [--timeout D] [VPATH...]\n", "--listen"},
		{"stop", "usage: loopgate stop [--control PATH] [--timeout D] VPATH...\n", "--listen"},
		{"start", "usage: loopgate start [--control PATH] [--timeout D] VPATH...\n", "--listen"},
		{"upgrade", "usage: loopgate upgrade [--admin ADDR] [--timeout D]\n", "--listen"},
	} {
		code, out, _ := runCapture(c.cmd, "--help")
		if code != 0 || !strings.HasPrefix(out, c.start) || strings.Contains(out, c.lack) {
			t.Errorf("%s --help: exit %d:\n%s", c.cmd, code, out)
		}
	}
	_, out, _ := runCapture("serve", "--help")
	for _, want := range []string{"  --listen ADDR", "Signals (serve):", "Exit status:"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}

// TestREADMEServeFlags keeps README's serve flag table and serve --help
// naming the same flags: every flag in the table's first column is one
// serve defines, and every serve flag has a row.
func TestREADMEServeFlags(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "| flag | default | meaning |")
	if !ok {
		t.Fatal("README has no serve flag table (| flag | default | meaning |)")
	}
	inREADME := map[string]bool{}
	for _, line := range strings.Split(rest, "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			break // the table's end
		}
		cells := strings.Split(line, "|")
		if len(cells) < 2 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)").FindAllStringSubmatch(cells[1], -1) {
			inREADME[m[1]] = true
		}
	}
	defined := map[string]bool{}
	newServeFlags(&serveConfig{}).VisitAll(func(f *flag.Flag) { defined[f.Name] = true })
	for name := range defined {
		if !inREADME[name] {
			t.Errorf("serve flag --%s has no row in README's flag table", name)
		}
	}
	for name := range inREADME {
		if !defined[name] {
			t.Errorf("README's flag table has --%s, which serve does not define", name)
		}
	}
}
