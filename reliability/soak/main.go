// Command soak runs loopgate for a long time (10 minutes by default) under
// a mixed load and keeps changing the hosted app under it, then reports
// what went wrong, how loopgate's memory moved and whether it leaked file
// descriptors. It is not part of `make test`; run it by hand:
//
//	make build
//	go run ./reliability/soak                  # 10 minutes
//	go run ./reliability/soak -duration 1m     # a quick look
//
// It builds the reliability backend (internal/testbackend) into
// a temporary directory, serves it with bin/loopgate (-loopgate to use
// another binary) on 127.0.0.1 with two processes, and runs at once:
// small GETs (-gets clients), 1 MiB uploads checked byte for byte,
// streaming downloads of 200 flushed lines, WebSocket echo sessions, and
// every -offline-every an app_offline.htm that stays for 3 s, every
// -edit-every a web.config edit that recycles the app. While the app is
// offline the only acceptable answer is 503 with the offline page; any
// other failure is an error. It samples loopgate's RSS and open file
// descriptors every 10 s, and at the end closes every client and waits for
// loopgate's pooled connections to time out before counting descriptors
// again. The exit status is 1 when there were errors or descriptors
// leaked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"

	"github.com/loopgate/loopgate/internal/gobuild"
)

var (
	duration    = flag.Duration("duration", 10*time.Minute, "how long to run the load")
	loopgateBin = flag.String("loopgate", "bin/loopgate", "the loopgate binary (make build)")
	gets        = flag.Int("gets", 8, "clients doing small GETs")
	uploads     = flag.Int("uploads", 2, "clients doing 1 MiB uploads")
	streams     = flag.Int("streams", 2, "clients doing streaming downloads")
	sockets     = flag.Int("websockets", 2, "clients doing WebSocket echo sessions")
	offlineOf   = flag.Duration("offline-every", 40*time.Second, "how often app_offline.htm appears (for 3 s)")
	editEvery   = flag.Duration("edit-every", 25*time.Second, "how often web.config is edited (a recycle)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// tally counts outcomes by kind. Safe for concurrent use.
type tally struct {
	mu     sync.Mutex
	ok     map[string]int64
	errs   map[string]int64
	sample map[string]string // one example message per error kind
}

func newTally() *tally {
	return &tally{ok: map[string]int64{}, errs: map[string]int64{}, sample: map[string]string{}}
}

func (t *tally) good(kind string) {
	t.mu.Lock()
	t.ok[kind]++
	t.mu.Unlock()
}

func (t *tally) bad(kind string, err error) {
	t.mu.Lock()
	t.errs[kind]++
	if _, ok := t.sample[kind]; !ok {
		t.sample[kind] = err.Error()
	}
	t.mu.Unlock()
}

func run() error {
	bin, err := filepath.Abs(*loopgateBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build, or pass -loopgate)", bin, err)
	}
	work, err := os.MkdirTemp("", "loopgate-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	app := filepath.Join(work, "testbackend")
	if err := gobuild.Build(app, "github.com/loopgate/loopgate/internal/testbackend"); err != nil {
		return err
	}
	appDir := filepath.Join(work, "app")
	if err := os.Mkdir(appDir, 0o755); err != nil {
		return err
	}
	edits := 0
	writeConfig := func() error {
		cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q processesPerApplication="2" shutdownTimeLimit="10" rapidFailsPerMinute="100">
      <environmentVariables>
        <environmentVariable name="SOAK_EDIT" value="%d" />
      </environmentVariables>
    </aspNetCore>
  </system.webServer>
</configuration>
`, app, edits)
		tmp := filepath.Join(appDir, "web.config.tmp")
		if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, filepath.Join(appDir, "web.config"))
	}
	if err := writeConfig(); err != nil {
		return err
	}

	lg, err := startLoopgate(bin, appDir)
	if err != nil {
		return err
	}
	defer lg.stop()
	base := "http://" + lg.front
	fmt.Printf("soak: loopgate %d on %s, admin %s, for %v\n", lg.cmd.Process.Pid, lg.front, lg.admin, *duration)

	// Warm up, then take the descriptor baseline with the app running.
	warm := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 20; i++ {
		if resp, err := warm.Get(base + "/"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	warm.CloseIdleConnections()
	time.Sleep(time.Second)
	start := procSample(lg.cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigc:
			fmt.Println("soak: interrupted; reporting what ran")
			cancel()
		case <-ctx.Done():
		}
	}()

	var offline atomic.Bool
	res := newTally()
	var wg sync.WaitGroup
	var clients []*http.Client
	worker := func(n int, kind string, f func(c *http.Client) error) {
		for range n {
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			clients = append(clients, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					wasOffline := offline.Load()
					err := f(c)
					switch {
					case err == nil:
						res.good(kind)
					case errors.Is(err, errOffline) && (wasOffline || offline.Load()):
						res.good(kind + " 503 offline (expected)")
						time.Sleep(50 * time.Millisecond)
					case ctx.Err() != nil:
						return // cut by the end of the run
					case wasOffline || offline.Load():
						res.bad(kind+" during app_offline", err)
					default:
						res.bad(kind, err)
					}
				}
			}()
		}
	}
	worker(*gets, "GET /", func(c *http.Client) error {
		body, err := fetch(c, base+"/")
		if err == nil && !strings.HasPrefix(body, "pid=") {
			err = fmt.Errorf("body %q", body)
		}
		time.Sleep(2 * time.Millisecond)
		return err
	})
	worker(*uploads, "POST 1 MiB", func(c *http.Client) error { return upload(c, base+"/upload") })
	worker(*streams, "GET stream", func(c *http.Client) error {
		body, err := fetch(c, base+"/stream?chunks=200")
		if err == nil && strings.Count(body, "\n") != 200 {
			err = fmt.Errorf("stream: %d lines, want 200", strings.Count(body, "\n"))
		}
		return err
	})
	for range *sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				wasOffline := offline.Load()
				err := wsSession(lg.front)
				switch {
				case err == nil:
					res.good("WebSocket session")
				case errors.Is(err, websocket.ErrBadStatus) && (wasOffline || offline.Load()):
					// Refused while offline: the upgrade got the 503.
					res.good("WebSocket 503 offline (expected)")
					time.Sleep(50 * time.Millisecond)
				case ctx.Err() != nil:
					return
				default:
					res.bad("WebSocket session", err)
				}
			}
		}()
	}

	// The app changes under the load.
	var changes []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		off := time.NewTicker(*offlineOf)
		edit := time.NewTicker(*editEvery)
		defer off.Stop()
		defer edit.Stop()
		page := filepath.Join(appDir, "app_offline.htm")
		for {
			select {
			case <-ctx.Done():
				os.Remove(page)
				return
			case <-off.C:
				offline.Store(true)
				// Written whole and renamed into place, as a deploy tool
				// should: a file created empty and written after shows an
				// empty page until the write event is seen.
				if err := os.WriteFile(page+".tmp", []byte(offlinePage), 0o644); err != nil {
					res.bad("app_offline", err)
				}
				if err := os.Rename(page+".tmp", page); err != nil {
					res.bad("app_offline", err)
				}
				changes = append(changes, time.Now().Format("15:04:05")+" app_offline.htm")
				select {
				case <-time.After(3 * time.Second):
				case <-ctx.Done():
				}
				os.Remove(page)
				// Requests that saw the offline view may still be answered
				// 503 for a moment after the removal.
				time.Sleep(500 * time.Millisecond)
				offline.Store(false)
			case <-edit.C:
				edits++
				if err := writeConfig(); err != nil {
					res.bad("web.config edit", err)
				}
				changes = append(changes, time.Now().Format("15:04:05")+" web.config edit")
			}
		}
	}()

	// Samples.
	type sample struct {
		at   time.Duration
		proc proc
	}
	var samples []sample
	began := time.Now()
	tick := time.NewTicker(10 * time.Second)
sampling:
	for {
		select {
		case <-tick.C:
			p := procSample(lg.cmd.Process.Pid)
			samples = append(samples, sample{time.Since(began).Round(time.Second), p})
			fmt.Printf("soak: %v rss %d MiB, %d fds, %d threads\n", time.Since(began).Round(time.Second), p.rssKB>>10, p.fds, p.threads)
		case <-ctx.Done():
			break sampling
		}
	}
	tick.Stop()
	wg.Wait()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	// loopgate closes pooled backend connections after 30 s idle; client
	// connections are gone now.
	fmt.Println("soak: load stopped; waiting 35 s for pooled connections to time out")
	time.Sleep(35 * time.Second)
	end := procSample(lg.cmd.Process.Pid)

	// Report.
	status := lg.status()
	fmt.Printf("\n## soak report (%v, loopgate %s)\n\n", time.Since(began).Round(time.Second), bin)
	fmt.Println("| outcome | count |")
	fmt.Println("|---|---|")
	res.mu.Lock()
	var total, errs int64
	for _, k := range sortedKeys(res.ok) {
		fmt.Printf("| %s ok | %d |\n", k, res.ok[k])
		total += res.ok[k]
	}
	for _, k := range sortedKeys(res.errs) {
		fmt.Printf("| %s **error** | %d (e.g. %s) |\n", k, res.errs[k], res.sample[k])
		errs += res.errs[k]
	}
	res.mu.Unlock()
	fmt.Printf("\n%d outcomes, %d errors; %d app changes (%s)\n", total+errs, errs, len(changes), strings.Join(changes, ", "))
	fmt.Printf("app: %s\n", status)
	fmt.Println("\n| t | RSS MiB | fds | threads |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| start | %d | %d | %d |\n", start.rssKB>>10, start.fds, start.threads)
	for _, s := range samples {
		fmt.Printf("| %v | %d | %d | %d |\n", s.at, s.proc.rssKB>>10, s.proc.fds, s.proc.threads)
	}
	fmt.Printf("| end, idle | %d | %d | %d |\n", end.rssKB>>10, end.fds, end.threads)
	leak := end.fds > start.fds+4
	if leak {
		fmt.Printf("\nfile descriptors: %d at start, %d at the end: LEAK\n", start.fds, end.fds)
	} else {
		fmt.Printf("\nfile descriptors: %d at start, %d at the end: no leak\n", start.fds, end.fds)
	}
	if errs > 0 || leak {
		return fmt.Errorf("%d errors, fd leak %v", errs, leak)
	}
	return nil
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}
