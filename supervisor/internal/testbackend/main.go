// Command testbackend is the backend the supervisor's real-process tests
// start: an HTTP server on 127.0.0.1:$ASPNETCORE_PORT whose misbehaviour is
// chosen through environment variables, so one binary plays every part
// (slow starter, crasher, never-listener, shutdown-ignorer).
//
//	TB_PRINT=text       print "out: text" to stdout and "err: text" to stderr at start
//	TB_LISTEN_DELAY=d   wait d before listening
//	TB_NO_LISTEN=1      never listen
//	TB_EXIT_AFTER=d     exit after d (TB_EXIT_CODE, default 3)
//	TB_IGNORE_TERM=1    ignore SIGTERM
//	TB_SHUTDOWN=ignore  answer the shutdown request with 404 instead of 202 and exiting
//	TB_CHILD=1          start a child process (in the same process group) that sleeps
//	-port N             listen on N instead of $ASPNETCORE_PORT
//
// GET / answers a JSON document with the pid, port, token, application path
// and the ASPNETCORE_* environment; GET /exit?code=N exits at once.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("TB_ROLE") == "child" {
		time.Sleep(time.Hour)
		return
	}
	port := flag.String("port", os.Getenv("ASPNETCORE_PORT"), "port to listen on")
	flag.Parse()
	if t := os.Getenv("TB_PRINT"); t != "" {
		fmt.Fprintln(os.Stdout, "out: "+t)
		fmt.Fprintln(os.Stderr, "err: "+t)
	}
	if os.Getenv("TB_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	if os.Getenv("TB_CHILD") == "1" {
		self, _ := os.Executable()
		c := exec.Command(self)
		c.Env = append(os.Environ(), "TB_ROLE=child")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		fmt.Printf("child-pid %d\n", c.Process.Pid)
	}
	if d := dur("TB_EXIT_AFTER"); d > 0 {
		code := 3
		if c, err := strconv.Atoi(os.Getenv("TB_EXIT_CODE")); err == nil {
			code = c
		}
		time.AfterFunc(d, func() { os.Exit(code) })
	}
	if os.Getenv("TB_NO_LISTEN") == "1" {
		// Not select{}: without cgo's threads the runtime would call a bare
		// select a deadlock and exit, which is not "never listens".
		for {
			time.Sleep(time.Hour)
		}
	}
	time.Sleep(dur("TB_LISTEN_DELAY"))
	l, err := net.Listen("tcp4", "127.0.0.1:"+*port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(2)
	}
	applPath := os.Getenv("ASPNETCORE_APPL_PATH")
	shutdownPath := strings.TrimSuffix(applPath, "/") + "/iisintegration"
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == shutdownPath && r.Method == http.MethodPost &&
			r.Header.Get("MS-ASPNETCORE-EVENT") == "shutdown" &&
			r.Header.Get("MS-ASPNETCORE-TOKEN") == os.Getenv("ASPNETCORE_TOKEN") {
			if os.Getenv("TB_SHUTDOWN") == "ignore" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			time.AfterFunc(10*time.Millisecond, func() { os.Exit(0) })
			return
		}
		if r.URL.Path == "/exit" {
			code, _ := strconv.Atoi(r.URL.Query().Get("code"))
			os.Exit(code)
		}
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ASPNETCORE_") || strings.HasPrefix(k, "TB_") {
				env[k] = v
			}
		}
		wd, _ := os.Getwd()
		json.NewEncoder(w).Encode(map[string]any{
			"pid": os.Getpid(), "port": *port, "token": os.Getenv("ASPNETCORE_TOKEN"),
			"args": os.Args[1:], "wd": wd, "env": env,
		})
	})
	http.Serve(l, mux)
}

func dur(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}
