package supervisor

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/cgroup"
	"github.com/loopgate/loopgate/pairing"
)

// killWait bounds how long anything waits for a SIGKILLed process to be
// reaped (a process in uninterruptible sleep can take a while).
const killWait = 5 * time.Second

// Supervisor runs the backends of a fixed set of apps. It is safe for
// concurrent use. Create it with New; stop it with Shutdown or Kill.
type Supervisor struct {
	opts     Options
	os       OS
	log      zerolog.Logger
	apps     []*App
	load     func(dir, vpath string) (*configload.AppSpec, error)
	newToken func() string

	shutc    chan struct{} // closed when Shutdown begins
	shutOnce sync.Once
	killc    chan struct{} // closed when Kill begins
	killOnce sync.Once

	tree *cgroup.Tree // Options.Contain; nil without

	mu     sync.Mutex
	live   map[Proc]struct{} // spawned and not yet reaped
	closed bool              // Kill ran: anything spawned later is killed at once
}

// New validates specs and prepares one App per spec, in order. Nothing is
// started until the first Acquire of an app; each app's directory is watched
// for app_offline.htm and web.config changes from now on.
func New(specs []*configload.AppSpec, opts Options) (*Supervisor, error) {
	s := &Supervisor{
		opts:     opts,
		os:       opts.OS,
		log:      opts.Logger,
		newToken: pairing.NewToken,
		shutc:    make(chan struct{}),
		killc:    make(chan struct{}),
		live:     map[Proc]struct{}{},
	}
	if s.os == nil {
		ros := realOS{}
		if opts.Contain {
			tree, err := cgroup.Open(cgroup.Options{Keeper: opts.ContainKeeper, KeeperLost: func(err error) {
				if err != nil {
					s.log.Error().Str("event", "containment").Err(err).Msg("the keeper exited and cannot be started again; retrying")
					return
				}
				s.log.Warn().Str("event", "containment").Msg("the keeper exited while loopgate runs; started a new one")
			}})
			if err != nil {
				s.log.Warn().Str("event", "containment").Str("mode", "none").Err(err).
					Msg("no process-tree containment: only the direct child of loopgate dies with it")
			} else {
				e := s.log.Info()
				if tree.Why() != "" {
					e = s.log.Warn().Str("missing", tree.Why())
				}
				e.Str("event", "containment").Str("mode", tree.Mode()).Str("cgroup", tree.Dir()).Msg("process-tree containment")
				for _, sw := range tree.Swept() {
					if sw.Err != nil {
						s.log.Warn().Str("event", "cgroup_swept").Str("swept", sw.Dir).Int("killed", sw.Killed).Err(sw.Err).
							Msg("could not fully remove the cgroup of a loopgate that is gone")
						continue
					}
					s.log.Info().Str("event", "cgroup_swept").Str("swept", sw.Dir).Int("killed", sw.Killed).
						Msg("removed the cgroup of a loopgate that is gone, and killed what still ran in it")
				}
			}
			ros.tree, s.tree = tree, tree
		}
		s.os = ros
	}
	s.load = func(dir, vpath string) (*configload.AppSpec, error) {
		// configload.Load's reading, through the OS seam.
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("app directory %s: %w", dir, err)
		}
		file := filepath.Join(abs, configload.FileName)
		data, err := s.os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read web.config: %w", err)
		}
		return configload.Parse(file, data, configload.Options{VirtualPath: vpath, Environ: opts.Environ, Logger: opts.Logger})
	}
	seen := map[string]string{}
	for i, spec := range specs {
		if spec == nil {
			return nil, fmt.Errorf("supervisor: spec %d is nil", i)
		}
		if d, dup := seen[spec.VirtualPath]; dup {
			return nil, fmt.Errorf("supervisor: virtual path %s is used by both %s and %s", spec.VirtualPath, d, spec.Dir)
		}
		seen[spec.VirtualPath] = spec.Dir
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	for _, spec := range specs {
		s.apps = append(s.apps, newApp(s, spec))
	}
	if opts.OS == nil {
		s.checkLimits()
	}
	for _, a := range s.apps {
		go a.run()
	}
	return s, nil
}

// Apps returns the apps in the order of the specs given to New.
func (s *Supervisor) Apps() []*App { return s.apps }

// RotateStdoutLogs has every stdout log file being written (stdoutLogEnabled)
// continue in a new file from its next line on (SIGUSR1, with logrotate's
// postrotate). Files that got nothing yet are kept.
func (s *Supervisor) RotateStdoutLogs() {
	for _, a := range s.apps {
		a.stdoutLogs.rotateAll()
	}
}

// Status returns every app's status, in the order of Apps.
func (s *Supervisor) Status() []AppStatus {
	out := make([]AppStatus, len(s.apps))
	for i, a := range s.apps {
		out[i] = a.Status()
	}
	return out
}

// Reload re-reads every app's web.config (SIGHUP). A valid changed spec
// recycles its app with zero downtime; an unchanged one leaves the app
// untouched; an invalid one keeps the running spec, and its error is
// returned here and shown in AppStatus.ConfigError.
func (s *Supervisor) Reload() []error {
	var errs []error
	for _, a := range s.apps {
		reply := make(chan error, 1)
		select {
		case a.reloadc <- reply:
		case <-a.done:
			continue
		}
		select {
		case err := <-reply:
			if err != nil {
				errs = append(errs, err)
			}
		case <-a.done:
		}
	}
	return errs
}

// Shutdown stops every backend gracefully (spec §4.5: drain, shutdown
// request, SIGTERM, SIGKILL after shutdownTimeLimit) and waits for them.
// From the moment it is called, Acquire returns Stopping. If ctx ends first,
// everything left is killed (as Kill) and ctx's error is returned. Calling it
// again waits again.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { close(s.shutc) })
	for _, a := range s.apps {
		select {
		case <-a.done:
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("supervisor: shutdown: %w", ctx.Err())
		}
	}
	s.closeTree()
	return nil
}

// checkLimits sets each app's memoryLimit and cpuLimit on its cgroup now,
// so that limits this host cannot enforce are reported when loopgate
// starts, not only by the app's first start (which fails for the same
// reason).
func (s *Supervisor) checkLimits() {
	for _, a := range s.apps {
		spec := a.Spec()
		if spec.MemoryLimit == 0 && spec.CPULimit == 0 {
			continue
		}
		if err := s.tree.SetLimits(a.vpath, cgroup.Limits{MemoryMax: spec.MemoryLimit, CPUPercent: spec.CPULimit}); err != nil {
			a.log.Error().Str("event", "limits_unavailable").Err(err).
				Msg("the app's memoryLimit or cpuLimit cannot be enforced here: its processes will not start")
		}
	}
}

// closeTree kills whatever is left in the backends' cgroups, removes them
// and stops the keeper, once every app has finished.
func (s *Supervisor) closeTree() {
	if err := s.tree.Close(); err != nil {
		s.log.Warn().Str("event", "containment").Err(err).Msg("cleaning up the backends' cgroups")
	}
}

// Containment names the process-tree containment in force ("cgroup",
// "cgroup-no-keeper", "process-group" or "none") and what is missing from
// full containment ("" if nothing).
func (s *Supervisor) Containment() (mode, missing string) {
	return s.tree.Mode(), s.tree.Why()
}

// Kill SIGKILLs every backend's process group at once (SIGQUIT) and waits,
// bounded, for the apps to finish. Acquire returns Stopping afterwards.
func (s *Supervisor) Kill() {
	s.killOnce.Do(func() { close(s.killc) })
	s.mu.Lock()
	s.closed = true
	for p := range s.live {
		p.Signal(syscall.SIGKILL)
		s.log.Warn().Str("event", "kill").Int("pid", p.PID()).Msg("backend killed")
	}
	s.mu.Unlock()
	t := time.NewTimer(killWait)
	defer t.Stop()
	for _, a := range s.apps {
		select {
		case <-a.done:
		case <-t.C:
			s.log.Error().Str("event", "kill").Msg("backends did not all exit after SIGKILL")
			s.closeTree()
			return
		}
	}
	s.closeTree()
}

// track registers a freshly spawned process. After Kill it kills it instead
// and reports false.
func (s *Supervisor) track(p Proc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		p.Signal(syscall.SIGKILL)
		return false
	}
	s.live[p] = struct{}{}
	return true
}

func (s *Supervisor) untrack(p Proc) {
	s.mu.Lock()
	delete(s.live, p)
	s.mu.Unlock()
}

// liveCount is the number of spawned processes not yet reaped.
func (s *Supervisor) liveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}
