// Cold start: how long after the app listens its first request is
// answered through loopgate. nginx and HAProxy start no apps.

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// measureColdStart starts, for every repetition and loopgate target, a
// fresh loopgate whose app has not started, sends the first request (GET
// /listened) and takes the time its answer arrived minus the time the app
// bound its listener (the answer's body, same clock).
func measureColdStart(c config, bins harness.Binaries, tmp string, serverCPU int) (*table, error) {
	t := &table{title: "Cold start", ref: "loopgate",
		targets: c.rowTargets("loopgate", "loopgate-sockmap"),
		method: "A new loopgate for every measurement, its app not started yet (loopgate starts it at the first request, as ANCM does); " +
			"the first request, GET /listened over a new connection from this program on CPU 1, is answered with the time the app " +
			"bound its listener. After listen: the answer's arrival minus that time; first request: from sending it (the app's start included).",
		metrics: []metric{
			{key: "after", head: "first answer after the app listens, ms", format: "%.1f", chart: "cold start: ms from the app's listen to the first answer (lower is better)"},
			{key: "total", head: "first request, ms", format: "%.1f"},
		},
		notes: []string{"nginx and HAProxy: n/a (they start no app). ANCM polls the app's port every 250 ms."}}
	n := 0
	err := measureTable(c, nil, t, func(name string) (map[string]float64, error) {
		n++
		accel := "off"
		if name == "loopgate-sockmap" {
			accel = "on"
		}
		app := filepath.Join(tmp, fmt.Sprintf("app-cold-%d", n))
		if err := harness.WriteApp(app, bins.Backend, "-pairing=off"); err != nil {
			return nil, err
		}
		lg, err := harness.StartLoopgate(bins.Loopgate, app, accel, serverCPU)
		if err != nil {
			return nil, err
		}
		defer lg.Stop()
		sent := time.Now()
		listened, err := firstAnswer(lg.Addr)
		answered := time.Now()
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, lg.Log())
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
		return map[string]float64{"after": ms(answered.Sub(listened)), "total": ms(answered.Sub(sent))}, nil
	})
	return t, err
}

// firstAnswer sends GET /listened to addr and returns the time in its
// answer.
func firstAnswer(addr string) (time.Time, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(harness.GET("bench.example", "/listened")); err != nil {
		return time.Time{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("first request: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("first request: %s %q %v", resp.Status, body, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("GET /listened answered %q", body)
	}
	return time.Unix(0, ns), nil
}
