// The pings that find a hung process (pingingEnabled, pingInterval,
// pingResponseTime, pingPath of issue 14): the pinger a ready process gets,
// the replacement of one that answers no ping, and the real OS's ping.

package supervisor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// pingOS is the optional part of the OS seam that pings a process. realOS
// has it; with an OS that does not, pingingEnabled does nothing.
type pingOS interface {
	// Ping sends GET url with MS-ASPNETCORE-TOKEN: token, over HTTP/2 with
	// prior knowledge when h2c (backendProtocol="h2c"), and returns the
	// status of the answer, or an error if none came within timeout. Any
	// HTTP answer counts as one.
	Ping(url, token string, h2c bool, timeout time.Duration) (int, error)
}

// startPinger pings p every pingInterval once it is ready, if the spec it
// was started with says pingingEnabled and the OS can ping.
func (a *App) startPinger(p *Process, spec *configload.AppSpec) {
	po, ok := a.s.os.(pingOS)
	if !spec.PingingEnabled || !ok {
		return
	}
	url := "http://" + p.addr
	if a.vpath != "/" {
		url += a.vpath
	}
	url += spec.PingPath
	a.goHelper(func() { a.runPinger(p, po, url, spec.PingInterval, spec.PingResponseTime) })
}

// runPinger probes p with GET url every interval until p exits or is taken
// out of service. When no probe has been answered for respond, counted
// from the first probe after the last answer, it reports p as hung (evHung)
// and starts counting again.
func (a *App) runPinger(p *Process, po pingOS, url string, interval, respond time.Duration) {
	d := a.diag.Load()
	var firstMiss time.Time // zero: the last probe was answered
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.quit:
			return
		case <-p.exited:
			return
		}
		sent := time.Now()
		if firstMiss.IsZero() || sent.Sub(firstMiss) < respond {
			timeout := respond
			if !firstMiss.IsZero() {
				timeout -= sent.Sub(firstMiss)
			}
			code, err := po.Ping(url, p.token, p.h2c, timeout)
			if err == nil {
				firstMiss = time.Time{}
				d.log.Debug().Int("pid", p.pid).Int("status", code).Msg("ping answered")
			} else {
				if firstMiss.IsZero() {
					firstMiss = sent
				}
				d.log.Debug().Int("pid", p.pid).Err(err).Msg("ping not answered")
			}
		}
		wait := interval - time.Since(sent)
		if !firstMiss.IsZero() {
			if left := respond - time.Since(firstMiss); left <= 0 {
				a.send(event{kind: evHung, p: p, since: firstMiss})
				firstMiss = time.Time{}
			} else {
				wait = min(wait, left)
			}
		}
		t.Reset(max(wait, 0))
	}
}

// onHung replaces a process that answered no ping for pingResponseTime:
// a new one starts, traffic moves to it once it is ready, and the hung
// one's tree is killed.
func (a *App) onHung(p *Process, since time.Time) {
	sl := a.slotOf(p)
	if sl == nil || p.stopping || sl.start != nil || a.stopping || a.stopped || a.offline {
		return
	}
	spec := a.spec.Load()
	if a.recycleSlot(sl, RecyclePing, fmt.Sprintf("answered no ping for pingResponseTime (%s)", spec.PingResponseTime),
		func(e *zerolog.Event) { e.Time("unanswered_since", since) }) {
		a.publish()
		return
	}
	a.logEvent(zerolog.WarnLevel, "ping", "the process answers no ping, but the rapid-fail window allows no replacement now",
		func(e *zerolog.Event) { e.Int("pid", p.pid).Int("slot", sl.idx) })
}

// endHelpers tells p's pinger to stop. Owned by run; safe to call twice.
func (p *Process) endHelpers() {
	if p.quit != nil && !p.quitClosed {
		close(p.quit)
		p.quitClosed = true
	}
}

// Ping is pingOS for the real OS: a GET on a connection of its own, closed
// after it, with the pairing token, whose answer is read (up to 64 KB) and
// dropped. A redirect is an answer, not followed: the token must not go
// elsewhere.
func (realOS) Ping(url, token string, h2c bool, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header["MS-ASPNETCORE-TOKEN"] = []string{token}
	req.Header["User-Agent"] = []string{"loopgate-ping"}
	t := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if h2c {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		t = &http.Transport{Protocols: &protos, Proxy: nil}
	}
	defer t.CloseIdleConnections()
	resp, err := (&http.Client{Transport: t, CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
