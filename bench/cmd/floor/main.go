// Command floor measures how low a Go reverse proxy's CPU per small GET can
// go, to tell what in loopgate's cost is its own and what comes with its
// design (issue 19 asks for user-space CPU at 0.75× nginx's).
//
// It runs wrk small GETs (`wrk -t1 -c32`, CPU 1) through five proxies of
// the same backend, all on CPU 0, interleaved, and prints user-space,
// kernel and total CPU per request and requests/s as ratios to nginx:
//
//   - nginx, one worker, upstream keep-alive (as in bench/cmd/compare);
//   - loopgate serve --accel off;
//   - fasthttp: fasthttp's Server with a HostClient and nothing else, the
//     least a proxy built on fasthttp's server loop does (it parses the
//     request and the response and writes both);
//   - epoll and epoll-raw: one epoll loop on one locked thread, a backend
//     connection per client connection, the request head relayed with a
//     fixed block of forwarding fields added and the response relayed as
//     it comes, with syscall.Syscall or RawSyscall for reads and writes. It
//     serves bodyless requests only: a floor, not a proxy.
//
// The proxies run as this program's own subcommands (`floor serve-epoll`,
// `floor serve-fasthttp`). Usage: go run ./bench/cmd/floor [-reps 5]
// [-duration 5s]. Needs nginx and wrk (make bench-compare installs them).
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "serve-epoll" {
		serveEpoll(os.Args[2], os.Args[3], os.Getenv("FLOOR_RAW_SYSCALLS") == "1")
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "serve-fasthttp" {
		serveFasthttp(os.Args[2], os.Args[3])
		return
	}
	reps := flag.Int("reps", 5, "repetitions of every measurement, interleaved")
	dur := flag.Duration("duration", 5e9, "length of each wrk run (whole seconds)")
	flag.Parse()
	if err := run(*reps, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
