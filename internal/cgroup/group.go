// One backend process's cgroup (Group): made below loopgate's for each
// spawn, its descriptor to spawn into, and its kill and removal once the
// process is reaped; without cgroups, the keeper told of its process group.

package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Group is one backend process's cgroup, or only its process group when the
// Tree has no cgroup. Safe for concurrent use.
type Group struct {
	t    *Tree
	dir  string            // "" without a cgroup
	v1   map[string]string // controller: the app's v1 mirror to start in (EnterThread)
	fd   *os.File
	pgid int
}

// NewGroup creates the cgroup for the next process of app (app/p<n> below
// loopgate's cgroup). FD is then the descriptor to spawn into
// (SysProcAttr.UseCgroupFD); call Started with the process id after the
// spawn, or Remove if the spawn failed.
func (t *Tree) NewGroup(app string) (*Group, error) {
	g := &Group{t: t}
	if t.dir == "" {
		return g, nil
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errors.New("cgroup tree closed")
	}
	t.seq++
	n := t.seq
	g.v1 = t.v1Apps[app] // replaced, never changed, by SetLimits
	t.mu.Unlock()
	appDir := filepath.Join(t.dir, groupName(app))
	if err := os.Mkdir(appDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	g.dir = filepath.Join(appDir, "p"+strconv.FormatUint(n, 10))
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	fd, err := os.Open(g.dir)
	if err != nil {
		os.Remove(g.dir)
		return nil, fmt.Errorf("opening cgroup: %w", err)
	}
	g.fd = fd
	return g, nil
}

// groupName turns an app's name (its virtual path) into a cgroup name:
// "/" is "root", "/api/v1" is "api_v1"; bytes other than letters, digits,
// '-', '.' and '_' become '_'.
func groupName(app string) string {
	app = strings.Trim(app, "/")
	if app == "" {
		return "root"
	}
	b := []byte(app)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '_'
		}
	}
	return "app_" + string(b)
}

// FD is the cgroup's directory descriptor for SysProcAttr.CgroupFD, or -1
// without a cgroup.
func (g *Group) FD() int {
	if g.fd == nil {
		return -1
	}
	return int(g.fd.Fd())
}

// Dir is the cgroup's absolute path, "" without one.
func (g *Group) Dir() string { return g.dir }

// Started records the spawned process (its pid is its process group id)
// and closes the descriptor. Without a cgroup the keeper is told to kill
// the process group if loopgate dies.
func (g *Group) Started(pid int) {
	if g.fd != nil {
		g.fd.Close()
		g.fd = nil
	}
	g.pgid = pid
	if g.dir == "" && g.t.keeper != nil {
		g.t.keeper.send('+', pid)
	}
}

// Kill SIGKILLs every process in the cgroup, wherever in it and whatever
// process group or session it is in. Without a cgroup it does nothing (the
// caller kills the process group).
func (g *Group) Kill() error {
	if g.dir == "" {
		return nil
	}
	return kill(g.dir)
}

// Remove kills what is left in the cgroup, waits up to wait for it to be
// empty and removes it. Without a cgroup it tells the keeper the process
// group is gone. Call it once, after the process has been reaped.
func (g *Group) Remove(wait time.Duration) error {
	if g.fd != nil {
		g.fd.Close()
		g.fd = nil
	}
	if g.dir == "" {
		if g.pgid != 0 && g.t.keeper != nil {
			g.t.keeper.send('-', g.pgid)
		}
		return nil
	}
	return removeAll(g.dir, wait)
}

// Populated reports whether any process is left in the cgroup.
func (g *Group) Populated() bool { return g.dir != "" && populated(g.dir) }
