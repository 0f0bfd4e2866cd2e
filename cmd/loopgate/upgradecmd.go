// `loopgate upgrade`: its help and flags, POST /upgrade on the running
// serve's admin endpoint, and the old and new PID and version it prints.
// The serve's side of an upgrade is in upgrade.go.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/loopgate/loopgate/internal/status"
)

// upgradeHelp is `loopgate upgrade --help`.
const upgradeHelp = `usage: loopgate upgrade [--admin ADDR] [--timeout D]

Replaces the running loopgate serve with the binary now on disk at the path
it was started from, with the same arguments, without refusing a connection
(as SIGUSR2 does): the new process inherits the listening sockets, starts the
apps the old one was running and becomes ready; then the old one stops
accepting, drains its requests and WebSocket tunnels for up to its
--drain-timeout, stops its backends and exits. If the new process exits or is
not ready within --upgrade-timeout, the old one keeps serving and this
command prints why. Prints the old and new PID and version; exit status 0
when upgraded, 1 when not, 2 on a usage error.

upgrade flags:
  --admin ADDR     the admin endpoint of the running serve (default 127.0.0.1:9180)
  --timeout D      how long to wait for the answer (default 5m)
`

const upgradeUsage = "usage: loopgate upgrade [--admin ADDR] [--timeout D]\nRun 'loopgate upgrade --help' for more.\n"

// runUpgrade is `loopgate upgrade`: POST /upgrade on the admin endpoint,
// then /status from whichever process answers now.
func runUpgrade(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	adminAddr := fs.String("admin", "127.0.0.1:9180", "")
	timeout := fs.Duration("timeout", 5*time.Minute, "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, upgradeHelp)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %s\n%s", flagError(fs, err), upgradeUsage)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loopgate upgrade: unexpected argument %q\n%s", fs.Arg(0), upgradeUsage)
		return exitUsage
	}
	statusURL, err := status.URL(*adminAddr)
	if err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	before, _, err := status.Fetch(ctx, *adminAddr)
	if err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %v\n", err)
		if errors.Is(err, status.ErrUnreachable) {
			fmt.Fprintf(stderr, "is `loopgate serve` running with --admin %s?\n", *adminAddr)
		}
		return exitFailure
	}
	url := strings.TrimSuffix(statusURL, "/status") + "/upgrade"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %v\n", err)
		return exitFailure
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %s: %v\n", url, err)
		return exitFailure
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "loopgate upgrade: %s", body)
		return exitFailure
	}
	var res upgradeResult
	if err := json.Unmarshal(body, &res); err != nil {
		fmt.Fprintf(stderr, "loopgate upgrade: %s: %v\n", url, err)
		return exitFailure
	}
	// A fresh connection: the old process answers no new ones.
	http.DefaultClient.CloseIdleConnections()
	after, _, err := status.Fetch(ctx, *adminAddr)
	if err != nil {
		fmt.Fprintf(stdout, "upgraded: pid %d -> %d (version %s -> ?: %v)\n", res.OldPID, res.NewPID, before.Version, err)
		return exitOK
	}
	fmt.Fprintf(stdout, "upgraded: pid %d -> %d, version %s -> %s; pid %d drains\n", res.OldPID, after.PID, before.Version, after.Version, res.OldPID)
	return exitOK
}
