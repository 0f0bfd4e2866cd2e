// The rows' servers: one backend, and each proxy in front of it.

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// target is one row: where to send requests and whose CPU to count.
type target struct {
	name       string
	addr       string
	tlsAddr    string       // the TLS listener; "" for direct
	proxyPIDs  func() []int // nil for direct
	backendPID int
	log        func() string // the end of the proxy's output; nil for direct
}

// logTail returns the last lines of the proxy's output ("" for direct),
// to go with a failure.
func (t *target) logTail() string {
	if t.log == nil {
		return ""
	}
	s := t.log()
	if i := len(s) - 4000; i > 0 {
		s = s[i:]
	}
	return s
}

// pids returns the proxy's processes, none for direct.
func (t *target) pids() []int {
	if t.proxyPIDs == nil {
		return nil
	}
	return t.proxyPIDs()
}

// startTargets starts every target of c, serving on cpu: one backend for
// direct, nginx and HAProxy (plain and TLS listeners, dir/cert.pem), and a
// loopgate (plain and TLS listeners) with its own backend per loopgate row.

func startTargets(c config, bins harness.Binaries, tmp string, cpu int) (map[string]*target, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	ts := map[string]*target{}
	be, err := harness.StartBackend(bins.Backend, "off", "", cpu)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, be.Stop)
	if err := harness.WriteCert(tmp); err != nil {
		return nil, stop, err
	}
	tlsArgs := []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", filepath.Join(tmp, "cert.pem"), "--tls-key", filepath.Join(tmp, "key.pem")}
	for _, name := range c.targets {
		t := &target{name: name, backendPID: be.PID()}
		switch name {
		case "direct":
			t.addr = be.Addr
		case "nginx", "haproxy", "haproxy-splice":
			dir := filepath.Join(tmp, "conf-"+name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, stop, err
			}
			for _, f := range []string{"cert.pem", "key.pem"} {
				if err := os.Link(filepath.Join(tmp, f), filepath.Join(dir, f)); err != nil {
					return nil, stop, err
				}
			}
			start := harness.StartNginx
			if name != "nginx" {
				start = harness.StartHAProxy
			}
			p, err := start(dir, be.Addr, cpu, harness.ProxyOptions{TLS: true, Splice: name == "haproxy-splice"})
			if err != nil {
				return nil, stop, err
			}
			stops = append(stops, p.Stop)
			t.addr, t.tlsAddr, t.proxyPIDs, t.log = p.Addr, p.TLSAddr, p.PIDs, p.Log
		case "loopgate", "loopgate-sockmap":
			accel := "off"
			if name == "loopgate-sockmap" {
				accel = "on"
			}
			app := filepath.Join(tmp, "app-"+name)
			if err := harness.WriteApp(app, bins.Backend, "-pairing=off"); err != nil {
				return nil, stop, err
			}
			lg, err := harness.StartLoopgate(bins.Loopgate, app, accel, cpu, tlsArgs...)
			if err != nil {
				return nil, stop, err
			}
			stops = append(stops, lg.Stop)
			if err := harness.Warm(lg.Addr, harness.GET("bench.example", "/"), 13); err != nil {
				return nil, stop, fmt.Errorf("%w\n%s", err, lg.Log())
			}
			if t.backendPID, err = lg.BackendPID(); err != nil {
				return nil, stop, err
			}
			pid := lg.PID()
			t.addr, t.tlsAddr, t.proxyPIDs, t.log = lg.Addr, lg.TLSAddr, func() []int { return []int{pid} }, lg.Log
		}
		if err := harness.Warm(t.addr, harness.GET("bench.example", "/"), 13); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", name, err)
		}
		ts[name] = t
	}
	return ts, stop, nil
}
