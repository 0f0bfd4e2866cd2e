// Small-GET load from wrk, run pinned, and what it reports.

package harness

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reported.
type WrkResult struct {
	Requests int64
	RPS      float64
	Errors   int64 // non-2xx/3xx answers and socket errors
}

var (
	reWrkRequests = regexp.MustCompile(`(\d+) requests in `)
	reWrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reWrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reWrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// ParseWrk reads wrk's report.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	n, rps := reWrkRequests.FindStringSubmatch(out), reWrkRPS.FindStringSubmatch(out)
	if n == nil || rps == nil {
		return r, fmt.Errorf("wrk output not understood:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(n[1], 10, 64)
	r.RPS, _ = strconv.ParseFloat(rps[1], 64)
	if m := reWrkNon2xx.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += v
	}
	if m := reWrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += v
		}
	}
	return r, nil
}

// RunWrk runs `wrk -t1 -cconns -dd url` pinned to cpu (wrk takes whole
// seconds).
func RunWrk(cpu int, url string, conns int, d time.Duration) (WrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s", url)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := StartPinned(cmd, cpu); err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w (apt-get install wrk)", err)
	}
	if err := cmd.Wait(); err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	r, err := ParseWrk(out.String())
	if err == nil && r.Requests == 0 {
		err = fmt.Errorf("%w\n%s", ErrNoAnswer, out.String())
	}
	return r, err
}

// ErrNoAnswer is a wrk run that got no answer at all.
var ErrNoAnswer = errors.New("wrk: no request answered")
