// Command wsecho is the backend of the suites tests' WebSocket cases and
// h2spec: a gorilla/websocket server (a library nobody on the team wrote) that
// reads ASPNETCORE_PORT, listens on 127.0.0.1 and prints "listening ADDR"
// on stdout (port 0 picks one, for the tests that run it directly).
//
//	/            any method: reads the body, answers 200 "ok from wsecho\n"
//	             (h2spec's target: its flow-control cases need 5 bytes)
//	GET /pid     its PID
//	GET /open    the number of WebSocket sessions open now
//	GET /echo    WebSocket: each message back as one frame (ReadMessage,
//	             WriteMessage); the text "close:N" makes it send a close
//	             frame with code N and reason "bye" and close the
//	             connection at once, "drop" makes it close the connection
//	             without a close frame
//	GET /stream  WebSocket: each message back as it is read, in frames of
//	             the 4 KiB write buffer (NextReader, NextWriter)
//	GET /ping    WebSocket: sends a ping "are you there" first, answers
//	             each pong with the text "pong:<payload>", then echoes
//
// Messages may be up to 32 MiB. It does not handle loopgate's shutdown
// request; SIGTERM ends it.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

var open atomic.Int64

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func main() {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("ASPNETCORE_PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsecho:", err)
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok from wsecho\n")
	})
	mux.HandleFunc("GET /pid", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getpid()) })
	mux.HandleFunc("GET /open", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, open.Load()) })
	mux.HandleFunc("GET /echo", session(echo))
	mux.HandleFunc("GET /stream", session(stream))
	mux.HandleFunc("GET /ping", session(func(c *websocket.Conn) {
		c.SetPongHandler(func(p string) error {
			return c.WriteMessage(websocket.TextMessage, []byte("pong:"+p))
		})
		if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(5*time.Second)); err != nil {
			return
		}
		echo(c)
	}))
	fmt.Fprintln(os.Stderr, "wsecho:", http.Serve(ln, mux))
	os.Exit(1)
}

func session(f func(*websocket.Conn)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		open.Add(1)
		defer open.Add(-1)
		defer c.Close()
		c.SetReadLimit(32 << 20)
		f(c)
	}
}

func echo(c *websocket.Conn) {
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if mt == websocket.TextMessage {
			if s, ok := strings.CutPrefix(string(p), "close:"); ok {
				code, _ := strconv.Atoi(s)
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye"), time.Now().Add(5*time.Second))
				return
			}
			if string(p) == "drop" {
				return
			}
		}
		if err := c.WriteMessage(mt, p); err != nil {
			return
		}
	}
}

func stream(c *websocket.Conn) {
	for {
		mt, r, err := c.NextReader()
		if err != nil {
			return
		}
		w, err := c.NextWriter(mt)
		if err != nil {
			return
		}
		if _, err := io.Copy(w, r); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			return
		}
	}
}
