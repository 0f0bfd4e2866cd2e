package supervisor

import (
	"io"
	"io/fs"
	"syscall"
	"time"
)

// OS is the supervisor's seam over the operating system: everything that
// spawns, signals, touches a socket, reads a file or watches a directory
// goes through it,
// so the state machines can be tested with fakes in milliseconds. Options.OS
// nil means the real Linux implementation. Implementations must be safe for
// concurrent use.
type OS interface {
	// Spawn starts c in a new process group whose leader dies with
	// loopgate (even when loopgate is SIGKILLed), stdin on /dev/null; with
	// Options.Contain, in a cgroup of its own, so that its whole tree is
	// killed with it and by the keeper if loopgate dies.
	Spawn(c *Cmd) (Proc, error)
	// PortFree reports whether 127.0.0.1:port can be bound right now.
	PortFree(port int) bool
	// Probe reports whether a TCP connection to 127.0.0.1:port is accepted
	// within timeout. It is the readiness and liveness check. A connect that
	// fails for want of loopgate's own resources (EMFILE, ENFILE, ENOBUFS,
	// ENOMEM) cannot tell and reports true.
	Probe(port int, timeout time.Duration) bool
	// SendShutdown POSTs the graceful shutdown request of spec §4.5 to url
	// with the headers MS-ASPNETCORE-EVENT: shutdown and
	// MS-ASPNETCORE-TOKEN: token, and returns the response status code.
	SendShutdown(url, token string, timeout time.Duration) (int, error)
	// ProbeH2C is Probe for an app with backendProtocol="h2c": the
	// connection must also speak HTTP/2 with prior knowledge, answering the
	// client preface and a PING with its SETTINGS and the PING's ACK
	// within timeout; the probe then says GOAWAY and closes. nil means
	// ready. An answer that is not HTTP/2 is an error wrapping
	// ErrNotHTTP2; anything else (refused, closed, slow) means not ready
	// yet. A connect that fails for want of loopgate's own resources
	// reports nil, as Probe reports true.
	ProbeH2C(port int, timeout time.Duration) error
	// SendShutdownH2C is SendShutdown over HTTP/2 with prior knowledge,
	// for an app with backendProtocol="h2c".
	SendShutdownH2C(url, token string, timeout time.Duration) (int, error)
	// Watch reports changes to the entries of dir (not recursive).
	Watch(dir string) (Watcher, error)
	// ReadFile returns the contents of the named file (app_offline.htm).
	ReadFile(name string) ([]byte, error)
	// Stat describes the named file (app_offline.htm while offline, and
	// web.config when the directory cannot be watched).
	Stat(name string) (fs.FileInfo, error)
}

// Cmd is what Spawn starts. Path is absolute; Args excludes argv[0] (Spawn
// passes Path as argv[0]).
type Cmd struct {
	Path string
	Args []string
	Env  []string
	Dir  string
	// Output asks for stdout and stderr as pipes (Proc.Stdout, Proc.Stderr);
	// false sends both to /dev/null.
	Output bool
	// App names the app the process belongs to (its virtual path); with
	// Options.Contain the real OS puts the process in a cgroup of its own
	// below the app's.
	App string
	// Cred, when set, is the user, group and supplementary groups the
	// process runs as (handler settings userName and groupName); nil:
	// loopgate's own.
	Cred *syscall.Credential
	// MemoryLimit (bytes) and CPULimit (percent of one CPU) are the limits
	// of the app's cgroup, over all its processes (handler settings
	// memoryLimit and cpuLimit); 0: none. The real OS sets them before the
	// spawn and fails it when it cannot (no cgroup, no controller).
	MemoryLimit int64
	CPULimit    int
}

// Proc is a spawned process as the OS seam sees it. Safe for concurrent use.
type Proc interface {
	PID() int
	// Stdout and Stderr are the read ends of the output pipes (nil without
	// Cmd.Output). The caller reads them to EOF and closes them.
	Stdout() io.ReadCloser
	Stderr() io.ReadCloser
	// Signal sends sig to the whole process group, and SIGKILL also to
	// every process in the process's cgroup, if it has one. After Wait has
	// seen the process exit it returns an error and sends nothing, so a
	// recycled process id is never signalled.
	Signal(sig syscall.Signal) error
	// Wait blocks until the process has exited, SIGKILLs what is left of its
	// process group and its cgroup (removing the cgroup), reaps it and
	// returns the exit status as text, e.g.
	// "exit status 3" or "signal: killed". Called exactly once.
	Wait() string
}

// Watcher delivers directory change notifications.
type Watcher interface {
	// Events yields the base name of each changed entry; "" means events were
	// lost and everything should be re-checked.
	Events() <-chan string
	Close() error
}
