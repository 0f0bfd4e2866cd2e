// The loopgate under soak: started from its binary on kernel-picked ports,
// its app's line of /status, its graceful stop, and the samples of its RSS
// and open descriptors.

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a sample of loopgate's resource use.
type proc struct {
	rssKB   int64
	fds     int
	threads int
}

func procSample(pid int) proc {
	var p proc
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				p.rssKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				p.threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		p.fds = len(fds)
	}
	return p
}

// loopgate is the running loopgate serve.
type loopgate struct {
	cmd          *exec.Cmd
	front, admin string
	done         chan struct{}
}

func startLoopgate(bin, appDir string) (*loopgate, error) {
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--log-format", "json", "--access-log=false", appDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &loopgate{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line["event"] {
			case "listening":
				if l.front == "" {
					l.front, _ = line["addr"].(string)
				}
			case "admin":
				l.admin, _ = line["addr"].(string)
			case "ready":
				once.Do(func() { close(ready) })
			}
			if lvl, _ := line["level"].(string); lvl == "error" || lvl == "warn" {
				fmt.Printf("soak: loopgate %s: %s %v\n", lvl, line["message"], line["error"])
			}
		}
	}()
	select {
	case <-ready:
		return l, nil
	case <-l.done:
		cmd.Wait()
		return nil, errors.New("loopgate exited before it was ready")
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("loopgate not ready within 15 s")
	}
}

// status is the app line of /status.
func (l *loopgate) status() string {
	resp, err := http.Get("http://" + l.admin + "/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var s struct {
		Apps []struct {
			State                                      string
			Starts, Crashes, Recycles, RapidFailBlocks uint64
			ConfigReloadsOK                            uint64 `json:"config_reloads_ok"`
		} `json:"apps"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || len(s.Apps) == 0 {
		return fmt.Sprintf("unreadable /status: %v", err)
	}
	a := s.Apps[0]
	return fmt.Sprintf("state %s, %d starts, %d crashes, %d recycles, %d config reloads, %d rapid-fail blocks",
		a.State, a.Starts, a.Crashes, a.Recycles, a.ConfigReloadsOK, a.RapidFailBlocks)
}

// stop stops loopgate gracefully (SIGTERM), bounded.
func (l *loopgate) stop() {
	l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(40 * time.Second):
		l.cmd.Process.Kill()
	}
	l.cmd.Wait()
}
