package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Snapshot is the /status document. A Snapshot is a value: once built it is
// not modified, so it may be shared between goroutines.
type Snapshot struct {
	Version       string     `json:"version"`
	Started       time.Time  `json:"started"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Draining      bool       `json:"draining"` // a SIGTERM/SIGINT drain has begun
	Listeners     []Listener `json:"listeners"`
	Acceleration  Accel      `json:"acceleration"`
	Apps          []App      `json:"apps"`

	// PID is loopgate's own process ID (it changes with `loopgate upgrade`).
	PID int `json:"pid,omitempty"`
	// LastUpgradeError says why the last binary upgrade failed (the running
	// loopgate kept serving); "" when none failed.
	LastUpgradeError string `json:"last_upgrade_error,omitempty"`
}

// Listener is one front listener.
type Listener struct {
	Addr string `json:"addr"` // the bound address, e.g. "127.0.0.1:8080"
	TLS  bool   `json:"tls"`
}

// Accel is the state of the eBPF sockmap acceleration.
type Accel struct {
	Mode   string `json:"mode"`             // the --accel flag: auto, on or off
	Active bool   `json:"active"`           // the programs are attached
	Reason string `json:"reason,omitempty"` // why it is not active, when it is not
	// Cgroup is the cgroup v2 directory the sockops program is attached
	// to (loopgate's own cgroup, or the mount's root when that cannot be
	// found: CgroupNote says why): only connections between processes in
	// it or below it are accelerated.
	Cgroup     string `json:"cgroup,omitempty"`
	CgroupNote string `json:"cgroup_note,omitempty"`
	// Messages redirected socket to socket in the kernel, and passed on to
	// the normal TCP path, since start.
	Redirected uint64 `json:"redirected"`
	Passed     uint64 `json:"passed"`
	// Fallbacks counts connections sent back to plain TCP because their
	// receiver fell more than 4 MiB behind (a slow client), since start.
	Fallbacks uint64 `json:"fallbacks"`
	// Released counts, of those, backend connections whose backend end
	// left the sockmap for plain TCP because loopgate had released them
	// for a large response body (it costs less than the sockmap's TCP
	// path), since start.
	Released uint64 `json:"released"`
}

// App is one mounted app.
type App struct {
	Name        string `json:"name"` // the metrics label: the virtual path
	VirtualPath string `json:"virtual_path"`
	Dir         string `json:"dir"`
	// State is idle (nothing started yet), starting, ready, crashloop,
	// offline or stopping.
	State string `json:"state"`
	// ConfigError is the last web.config error, kept while the previous
	// configuration keeps running; "" when the file in force is fine.
	ConfigError string `json:"config_error,omitempty"`
	// LastStartError says why the last failed start failed; kept after later
	// successes so an operator can see what went wrong.
	LastStartError  string `json:"last_start_error,omitempty"`
	Offline         bool   `json:"offline"` // app_offline.htm is present
	Starts          uint64 `json:"starts"`
	Crashes         uint64 `json:"crashes"`
	Restarts        uint64 `json:"restarts"`
	RapidFailBlocks uint64 `json:"rapid_fail_blocks"`
	Recycles        uint64 `json:"recycles"`
	// RecyclesByReason splits Recycles by reason (config, time, requests,
	// memory, schedule, ping, manual), every reason present.
	RecyclesByReason map[string]uint64 `json:"recycles_by_reason,omitempty"`
	// NotReady says why the app holds /readyz back ("" when it does not):
	// a startMode AlwaysRunning app with no process ready.
	NotReady string `json:"not_ready,omitempty"`
	// StartFailures counts failed starts (recycles' included).
	StartFailures uint64 `json:"start_failures"`
	// Release is what the app directory resolved to (symbolic links
	// followed) when the configuration in force was loaded: the release
	// running when the directory is a link such as current -> releases/42.
	Release             string `json:"release,omitempty"`
	ConfigReloadsOK     uint64 `json:"config_reloads_ok"`
	ConfigReloadsFailed uint64 `json:"config_reloads_failed"`
	// Usage is what the app's processes have used, read from their
	// cgroups; absent without cgroup containment.
	Usage     *Usage    `json:"usage,omitempty"`
	Processes []Process `json:"processes"`
}

// Usage is an app's resource use.
type Usage struct {
	// CPUSeconds is the user and system CPU time of every process the app
	// has run since loopgate started, exited ones included.
	CPUSeconds float64 `json:"cpu_seconds"`
	// MemoryBytes is the memory its processes use now (memory.current where
	// the memory controller is enabled, else the sum of their RSS).
	MemoryBytes int64 `json:"memory_bytes"`
}

// Process is one backend process slot.
type Process struct {
	Slot          int       `json:"slot"`
	PID           int       `json:"pid"`
	Port          int       `json:"port"`
	State         string    `json:"state"`
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Restarts      uint64    `json:"restarts"` // restarts of this slot
	Requests      uint64    `json:"requests"` // requests served by this process
	// LastExit is how the slot's previous process ended, e.g. "exit status 3"
	// or "signal: killed"; "" if none has.
	LastExit string `json:"last_exit,omitempty"`
}

// ErrUnreachable is returned by Fetch when nothing answers at the address.
var ErrUnreachable = errors.New("no loopgate admin endpoint answering")

// URL turns an --admin address ("127.0.0.1:9180", ":9180", "[::1]:9180" or
// a full http:// URL) into the URL of its /status document. An empty host
// means this machine.
func URL(admin string) (string, error) {
	if strings.HasPrefix(admin, "http://") || strings.HasPrefix(admin, "https://") {
		return strings.TrimSuffix(admin, "/") + "/status", nil
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("admin address %q: want HOST:PORT: %w", admin, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/status", nil
}

// Fetch gets and decodes the /status document from a running loopgate. It
// returns the raw JSON too, for `loopgate status --json`.
func Fetch(ctx context.Context, admin string) (Snapshot, []byte, error) {
	url, err := URL(admin)
	if err != nil {
		return Snapshot{}, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("fetching status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Snapshot{}, nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return Snapshot{}, nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	return s, body, nil
}
