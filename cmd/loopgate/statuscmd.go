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

// runStatus is `loopgate status [--admin ADDR] [--json]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	admin := fs.String("admin", "127.0.0.1:9180", "")
	asJSON := fs.Bool("json", false, "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, helpText)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate status: %v\nusage: loopgate status [--admin ADDR] [--json]\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loopgate status: unexpected argument %q\nusage: loopgate status [--admin ADDR] [--json]\n", fs.Arg(0))
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
