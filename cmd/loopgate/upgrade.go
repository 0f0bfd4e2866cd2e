package main

// Binary upgrade (issue 16, part 1): `loopgate upgrade`, POST /upgrade on
// the admin endpoint or SIGUSR2 replace the running serve with the binary
// now on disk, as nginx's binary upgrade does. cloudflare/tableflip does
// the socket handover: the running serve (the old process) starts the
// binary at its own path with its own arguments, passing it the listening
// sockets (front and admin); the new process binds through them, starts the
// backends of the apps the old one was running, and says it is ready; only
// then does the old one hand systemd the main PID (MAINPID=), stop
// accepting, drain its requests and WebSocket tunnels for up to
// --drain-timeout, stop its own backends and exit. Both processes accept
// from the same sockets while they overlap, so no connect is refused. If
// the new process exits or is not ready within --upgrade-timeout, the old
// one kills it, keeps serving and says why (log, /status, the answer to
// `loopgate upgrade`).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/loopgate/loopgate/supervisor"
)

// upgradeWarmEnv names, in the new process's environment, the apps the old
// one was running (virtual paths, one a line): the new process starts them
// before it says it is ready, so no request pays a cold start. Neither it
// nor tableflip's marker reaches the backends (backendEnviron).
const upgradeWarmEnv = "LOOPGATE_UPGRADE_WARM"

// tableflipEnv is the variable tableflip sets in the new process.
const tableflipEnv = "TABLEFLIP_HAS_PARENT_7DIU3"

// The process's one tableflip.Upgrader (tableflip allows one per process;
// tests may run serve more than once in a process).
var (
	upgOnce sync.Once
	upg     *tableflip.Upgrader
	upgErr  error
)

func processUpgrader(timeout time.Duration) (*tableflip.Upgrader, error) {
	upgOnce.Do(func() { upg, upgErr = tableflip.New(tableflip.Options{UpgradeTimeout: timeout}) })
	return upg, upgErr
}

// upgradeResult is the answer to POST /upgrade and `loopgate upgrade`.
type upgradeResult struct {
	OldPID int `json:"old_pid"`
	NewPID int `json:"new_pid,omitempty"` // 0 when it could not be found
}

// upgradeCall is one request for an upgrade; reply is nil for SIGUSR2.
type upgradeCall struct {
	reply chan upgradeOutcome
}

type upgradeOutcome struct {
	res upgradeResult
	err error
}

// listenFunc is how serve binds: through tableflip, so sockets are
// inherited from an old process and handed to a new one, or net.Listen
// when tableflip is unavailable.
//
// tableflip names a socket by the address asked for, which is not unique
// when it has port 0 (--listen 127.0.0.1:0 --admin 127.0.0.1:0): the n-th
// request for the same address is named addr#n. serve binds in the same
// order in every process (admin, then --listen, then --tls-listen), and
// the new process runs with the same arguments, so the names match.
func (srv *server) listenFunc() func(network, addr string) (net.Listener, error) {
	if srv.upg == nil {
		return net.Listen
	}
	return func(network, addr string) (net.Listener, error) {
		srv.listenMu.Lock()
		if srv.listenSeen == nil {
			srv.listenSeen = map[string]int{}
		}
		srv.listenSeen[network+" "+addr]++
		name := addr
		if n := srv.listenSeen[network+" "+addr]; n > 1 {
			name = addr + "#" + strconv.Itoa(n)
		}
		srv.listenMu.Unlock()
		return srv.upg.Fds.ListenWithCallback(network, name, func(network, _ string) (net.Listener, error) {
			return net.Listen(network, addr)
		})
	}
}

// upgradeUnsupported says why this process cannot be upgraded, or "".
func (srv *server) upgradeUnsupported() string {
	switch {
	case srv.upg == nil:
		return fmt.Sprintf("binary upgrade unavailable: %v", srv.upgErr)
	case os.Getenv(reaperChildEnv) != "":
		return "loopgate runs under its own init as PID 1 (a container): replace the container instead"
	}
	return ""
}

// requestUpgrade is admin.Options.Upgrade: it asks the serve loop for an
// upgrade and waits for the outcome.
func (srv *server) requestUpgrade(ctx context.Context) (any, error) {
	if srv.draining.Load() {
		return nil, errors.New("loopgate is stopping; no upgrade")
	}
	c := upgradeCall{reply: make(chan upgradeOutcome, 1)}
	select {
	case srv.upgradeReq <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case o := <-c.reply:
		if o.err != nil {
			return nil, o.err
		}
		return o.res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startUpgrade begins an upgrade in the background (the serve loop keeps
// handling signals); its outcome arrives on srv.upgradeDone. Callers that
// ask while one runs are told so at once.
func (srv *server) startUpgrade(c upgradeCall, via string) {
	fail := func(err error) {
		msg := "upgrade refused: " + err.Error()
		srv.lastUpgradeErr.Store(&msg)
		srv.log.Error().Str("event", "upgrade_failed").Str("via", via).Err(err).Msg("binary upgrade refused; still serving")
		if c.reply != nil {
			c.reply <- upgradeOutcome{err: err}
		}
	}
	if why := srv.upgradeUnsupported(); why != "" {
		fail(errors.New(why))
		return
	}
	// An app with a fixed port cannot have its new backend start beside
	// the running one: the new one would fail to bind while the readiness
	// probe reached the old one.
	for i, a := range srv.sup.Status() {
		if port := srv.sup.Apps()[i].ExplicitPort(); port != 0 && len(runningPIDs(a)) > 0 {
			fail(fmt.Errorf("app %s runs on the fixed ASPNETCORE_PORT %d, which its backend in the new loopgate could not bind beside the running one; stop it first (loopgate stop %s) or let loopgate choose its port", a.Name, port, a.Name))
			return
		}
	}
	if srv.upgrading != nil {
		if c.reply != nil {
			srv.upgrading = append(srv.upgrading, c)
		}
		srv.log.Warn().Str("event", "upgrade").Str("via", via).Msg("an upgrade is already in progress")
		return
	}
	srv.upgrading = []upgradeCall{c}
	// What tableflip will start: os.Args[0] looked up as exec does, made
	// absolute (loopgate never changes its working directory).
	bin, _ := exec.LookPath(os.Args[0])
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	srv.log.Info().Str("event", "upgrade").Str("via", via).Str("binary", bin).Str("upgrade_timeout", srv.cfg.upgradeTimeout().String()).
		Msg("upgrading: starting the binary on disk with the listening sockets; serving on until it is ready")
	srv.sdNotify(srv.notify.Status, "upgrading: starting "+bin)
	// The apps running now are started by the new process before it says
	// it is ready.
	var warm []string
	for _, a := range srv.sup.Status() {
		for _, p := range a.Processes {
			if p.State == supervisor.StateReady {
				warm = append(warm, a.Name)
				break
			}
		}
	}
	os.Setenv(upgradeWarmEnv, strings.Join(warm, "\n"))
	go func() {
		err := srv.upg.Upgrade()
		os.Unsetenv(upgradeWarmEnv)
		var res upgradeResult
		res.OldPID = os.Getpid()
		if err == nil {
			res.NewPID = findUpgradeChild(bin)
		}
		srv.upgradeDone <- upgradeOutcome{res: res, err: err}
	}()
}

// runningPIDs lists the PIDs of an app's live processes.
func runningPIDs(a supervisor.AppStatus) []int {
	var pids []int
	for _, p := range a.Processes {
		if p.PID > 0 {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// finishUpgrade takes the outcome of startUpgrade: on failure it records
// and reports why and returns false (serving goes on); on success it hands
// the main PID over to systemd and returns true: the caller drains.
func (srv *server) finishUpgrade(o upgradeOutcome) bool {
	calls := srv.upgrading
	srv.upgrading = nil
	if o.err != nil {
		err := fmt.Errorf("upgrade failed, still serving from pid %d: %w (the new process's own log lines say more)", os.Getpid(), o.err)
		msg := err.Error()
		srv.lastUpgradeErr.Store(&msg)
		srv.log.Error().Str("event", "upgrade_failed").Err(o.err).Msg("binary upgrade failed; the running loopgate keeps serving")
		srv.sdNotify(srv.notify.Status, srv.statusLine()+"; last upgrade failed, see the log")
		for _, c := range calls {
			if c.reply != nil {
				c.reply <- upgradeOutcome{err: err}
			}
		}
		return false
	}
	// The old process answers no more admin requests: the new one, which
	// shares the socket, takes every new connection from here on (so a
	// `loopgate status` right after `loopgate upgrade` sees the new one).
	if srv.admin != nil {
		srv.admin.StopAccepting()
	}
	if srv.control != nil {
		// The new process serves the control socket's file from now on.
		cs := srv.control
		cs.HandedOver()
		go cs.Close()
	}
	if o.res.NewPID > 0 {
		// systemd (NotifyAccess=main) takes MAINPID= from the main process
		// only: this one, until now. The new process says READY=1 itself
		// later only after reloads.
		if err := srv.notify.Send("MAINPID="+strconv.Itoa(o.res.NewPID), "READY=1",
			"STATUS=upgraded: pid "+strconv.Itoa(o.res.NewPID)+" serves; pid "+strconv.Itoa(os.Getpid())+" drains"); err != nil {
			srv.log.Warn().Err(err).Msg("notifying the service manager")
		}
	} else {
		srv.log.Warn().Msg("upgrade: the new process's PID was not found; systemd is not told MAINPID=")
	}
	// Nothing more goes to systemd from this process: it is no longer the
	// service's main process (a STOPPING=1 now would stop the service).
	srv.notify = nil
	srv.log.Info().Str("event", "upgrade_done").Int("new_pid", o.res.NewPID).
		Msg("upgrade done: the new loopgate is ready; this one stops accepting and drains")
	for _, c := range calls {
		if c.reply != nil {
			c.reply <- o
		}
	}
	return true
}

// findUpgradeChild returns the PID of the process tableflip just started:
// this process's child running bin (the keeper, a child too, names itself
// loopgate-keeper). tableflip does not say it.
func findUpgradeChild(bin string) int {
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		want = bin
	}
	self := os.Getpid()
	best, bestStart := 0, int64(-1)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, f := s[open+1:end], strings.Fields(s[end+1:])
		if len(f) < 20 || comm == "loopgate-keeper" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		if exe, err := os.Readlink("/proc/" + d.Name() + "/exe"); err != nil || exe != want {
			continue
		}
		if start, _ := strconv.ParseInt(f[19], 10, 64); start > bestStart {
			best, bestStart = pid, start
		}
	}
	return best
}

// readyAfterUpgrade is the new process's side: once its listeners serve, it
// starts the apps the old process was running (bounded by
// --upgrade-timeout, less a margin for the handover) and tells the old
// process it is ready. An app that does not start fails the upgrade: this
// process exits and the old one keeps serving.
func (srv *server) readyAfterUpgrade() error {
	warm := os.Getenv(upgradeWarmEnv)
	os.Unsetenv(upgradeWarmEnv)
	bound := srv.cfg.upgradeTimeout() * 3 / 4
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for _, name := range strings.Split(warm, "\n") {
		if name == "" {
			continue
		}
		for _, a := range srv.sup.Apps() {
			if a.Name() != name {
				continue
			}
			p, out := a.Acquire(ctx)
			if out != supervisor.Ready {
				why := a.Status().LastStartError
				if why == "" {
					why = out.String()
				}
				return fmt.Errorf("app %s did not start in the new loopgate within %v: %s", name, bound, why)
			}
			p.ReleaseUnused()
			// One process is ready; the others (processesPerApplication)
			// start beside it: wait for them too, within the bound.
			ready, slots := 0, 0
			for {
				st := a.Status()
				ready, slots = 0, len(st.Processes)
				for _, pr := range st.Processes {
					if pr.State == supervisor.StateReady {
						ready++
					}
				}
				if ready >= slots || ctx.Err() != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			srv.log.Info().Str("event", "upgrade_warm").Str("app", name).Int("ready", ready).Int("processes", slots).
				Msg("upgrade: app started before taking over")
		}
	}
	return srv.upg.Ready()
}
