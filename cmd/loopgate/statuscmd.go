package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/loopgate/loopgate/internal/status"
)

// statusTimeout bounds `loopgate status`: a hung admin endpoint must not
// hang an operator's shell or a monitoring script.
const statusTimeout = 10 * time.Second

const statusUsage = "usage: loopgate status [--admin ADDR] [--json]\nRun 'loopgate status --help' for more.\n"

// statusHelp is `loopgate status --help`.
const statusHelp = `usage: loopgate status [--admin ADDR] [--json]

Shows what a running loopgate serve is doing, from its admin endpoint's
/status: version, uptime, listeners, acceleration, and per app its state,
counters, processes (PID, port, uptime, requests, last exit) and its last
configuration error and start failure. Exit status 1 when the endpoint
cannot be reached, 2 on a usage error.

` + statusFlagsHelp

// runStatus is `loopgate status [--admin ADDR] [--json]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	admin := fs.String("admin", "127.0.0.1:9180", "")
	asJSON := fs.Bool("json", false, "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, statusHelp)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate status: %s\n%s", flagError(fs, err), statusUsage)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loopgate status: unexpected argument %q\n%s", fs.Arg(0), statusUsage)
		return exitUsage
	}
	if _, err := status.URL(*admin); err != nil {
		fmt.Fprintf(stderr, "loopgate status: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	snap, raw, err := status.Fetch(ctx, *admin)
	if err != nil {
		fmt.Fprintf(stderr, "loopgate status: %v\n", err)
		if errors.Is(err, status.ErrUnreachable) {
			fmt.Fprintf(stderr, "is `loopgate serve` running with --admin %s?\n", *admin)
		}
		return exitFailure
	}
	if *asJSON {
		_, err = stdout.Write(raw)
	} else {
		err = status.WriteTable(stdout, snap)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate status: %v\n", err)
		return exitFailure
	}
	return exitOK
}
