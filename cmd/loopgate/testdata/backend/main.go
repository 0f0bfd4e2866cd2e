// Command backend is the test backend for cmd/loopgate's process tests: it
// speaks the hosting contract with nothing but the standard library, so
// those tests do not depend on the example app.
//
//	GET /pid          the backend's PID
//	GET /slow?ms=N    answers after N ms (a request in flight during a drain)
//	GET /env?name=X   the value of environment variable X
//	POST {APPL_PATH}/iisintegration with MS-ASPNETCORE-EVENT: shutdown
//	                  answers 202 and exits (the graceful stop of spec §4.5)
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	token := os.Getenv("ASPNETCORE_TOKEN")
	base := strings.TrimSuffix(os.Getenv("ASPNETCORE_APPL_PATH"), "/")
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("ASPNETCORE_PORT")}
	stop := make(chan struct{}, 1)
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("MS-ASPNETCORE-TOKEN") != token {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		path := strings.TrimPrefix(r.URL.Path, base)
		switch {
		case r.Method == http.MethodPost && path == "/iisintegration" && strings.EqualFold(r.Header.Get("MS-ASPNETCORE-EVENT"), "shutdown"):
			w.WriteHeader(http.StatusAccepted)
			select {
			case stop <- struct{}{}:
			default:
			}
		case path == "/slow":
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			time.Sleep(time.Duration(ms) * time.Millisecond)
			fmt.Fprintf(w, "slow done pid=%d\n", os.Getpid())
		case path == "/env":
			fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
		default:
			fmt.Fprintf(w, "pid=%d\n", os.Getpid())
		}
	})
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-stop:
		case <-sigc:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
