package supervisor

// This file is the contract between supervisor and its callers (fastpath,
// cmd/loopgate, the admin endpoint). Keep these names and signatures stable;
// everything behind them is the supervisor's own business.

// Outcome is what Acquire tells the forwarder about an app.
type Outcome uint8

const (
	// Ready: a live process was returned; the caller must call Release on it
	// exactly once when the request is done.
	Ready Outcome = iota
	// StartFailed: no process could be started, or the rapid-fail window is
	// full. The forwarder answers 502.5 (or a bare 502 with
	// disableStartUpErrorPage).
	StartFailed
	// Offline: app_offline.htm is present. The forwarder answers 503 with
	// App.OfflinePage() as text/html.
	Offline
	// Stopping: the app or loopgate is shutting down. The forwarder answers a
	// bare 503.
	Stopping
)

func (o Outcome) String() string {
	switch o {
	case Ready:
		return "ready"
	case StartFailed:
		return "start-failed"
	case Offline:
		return "offline"
	case Stopping:
		return "stopping"
	}
	return "unknown"
}

// PortRegistry is told about backend ports as backends become ready and go
// away. The eBPF accelerator implements it; nil means no acceleration.
type PortRegistry interface {
	AddPort(port uint16) error
	RemovePort(port uint16) error
}

// Upstream is the forwarder's per-process state (its connection pool). The
// supervisor creates one through Options.NewUpstream before a process is
// handed out and closes it after the process has been retired and drained.
type Upstream interface {
	Close()
}
