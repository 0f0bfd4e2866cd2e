package configload

import "time"

// AppSpec is one app's configuration, read from its web.config.
//
// An AppSpec is immutable once returned by Load or Parse: callers must not
// modify it or the slices it holds, and may share it between goroutines
// freely. Two specs from the same inputs are Equal; the supervisor recycles
// an app only when its spec changed.
type AppSpec struct {
	// Dir is the app's physical path: absolute, cleaned, no trailing slash.
	Dir string
	// ConfigFile is the web.config the spec was read from (Dir/web.config).
	ConfigFile string
	// VirtualPath is where the app is mounted: "/" or a cleaned prefix such as
	// "/api" (no trailing slash). The backend sees it as ASPNETCORE_APPL_PATH.
	VirtualPath string

	// ProcessPath is aspNetCore@processPath after Windows path translation
	// (DESIGN.md §4: a leading \\?\ is dropped and every \ becomes /) and
	// %VAR% expansion, or ANCM_LAUNCHER_PATH from Options.Environ taken as
	// given. A relative path is not resolved here: the supervisor tries Dir
	// first and then $PATH, as the reference does. Required, never empty.
	ProcessPath string
	// ProcessPathFallback is ProcessPath without its ".exe" suffix (any case)
	// when ProcessPath is relative and ends in ".exe", else empty: a web.config
	// published for Windows names "MyApp.exe" where the Linux build is
	// "MyApp". The supervisor tries it when ProcessPath does not exist
	// (DESIGN.md §4).
	ProcessPathFallback string
	// ProcessPathSource says where ProcessPath was written, for messages
	// about it (such as loopgate check's "not found"): a Problem without a
	// Rule holding the file, line, attribute and value as written, or Attr
	// ANCM_LAUNCHER_PATH with its value and no file when that variable set
	// it. Equal ignores it, as it does Warnings.
	ProcessPathSource Problem
	// Arguments is aspNetCore@arguments (or ANCM_LAUNCHER_ARGS, taken as
	// given) %VAR%-expanded, then split like a Windows command line
	// (CommandLineToArgvW rules), then translated: in a token that starts with
	// .\ or ..\ every \ becomes /. The texts %ASPNETCORE_PORT% and
	// %ASPNETCORE_APPL_PATH% (matched in any case, written back in upper case,
	// anywhere inside a token) are never expanded here: the supervisor
	// replaces them with the port chosen for each start and VirtualPath.
	// Empty when there are no arguments.
	Arguments []string

	// Environment holds the <environmentVariables> entries in document order,
	// names deduplicated case-insensitively (a later entry overwrites an
	// earlier one's value in place, keeping the first spelling), values %VAR%-expanded against Options.Environ
	// except %ASPNETCORE_PORT% and %ASPNETCORE_APPL_PATH%, left in upper case
	// for the supervisor to substitute on each start as in Arguments.
	// With ANCM_PREFER_ENVIRONMENT_VARIABLES=1|true in Options.Environ, an
	// entry whose name exists there takes that value instead. An entry
	// ASPNETCORE_PORT that ends up empty is dropped (the reference then
	// chooses a port per start); a non-empty one is an integer 1025-48000.
	// The variables the supervisor always sets itself (ASPNETCORE_APPL_PATH,
	// ASPNETCORE_IIS_*) are kept here and carry a warning.
	Environment []EnvVar

	// StartupTimeLimit is aspNetCore@startupTimeLimit: how long one start
	// attempt may take to listen. Default 120 s, range 0-3600 s; 0 is not
	// infinite (one quick check, then failure).
	StartupTimeLimit time.Duration
	// ShutdownTimeLimit is aspNetCore@shutdownTimeLimit: how long a graceful
	// stop may take before the process group is killed. Default 10 s, range
	// 0-600 s; 0 kills at once.
	ShutdownTimeLimit time.Duration
	// RapidFailsPerMinute is aspNetCore@rapidFailsPerMinute: crashes and
	// failed starts allowed in a sliding 60 s window. Default 10, range 0-100.
	RapidFailsPerMinute int
	// RequestTimeout is aspNetCore@requestTimeout: the inactivity timeout on
	// the backend hop. Default 2 min, range 0-360 h, 1 s granularity; 0 means
	// no timeout.
	RequestTimeout time.Duration
	// StdoutLogEnabled is aspNetCore@stdoutLogEnabled. Default false.
	StdoutLogEnabled bool
	// StdoutLogFile is aspNetCore@stdoutLogFile, translated and expanded like
	// ProcessPath, as an absolute cleaned base path (relative values are
	// resolved against Dir). Default Dir/aspnetcore-stdout.
	StdoutLogFile string
	// StdoutLogMaxBytes is handler setting stdoutLogMaxBytes: once a stdout
	// log file holds this many bytes, the next line starts a new file
	// (<base>_<start>_<pid>.1.log, .2.log, ...). Default 0: one file per
	// process, never cut (the reference's behaviour); else 4096-2^40.
	StdoutLogMaxBytes int64
	// StdoutLogMaxFiles is handler setting stdoutLogMaxFiles: how many of
	// the app's stdout log files (<base>_*.log) are kept; when a file is
	// created, the oldest closed ones beyond it are deleted. Default 0: all
	// are kept (the reference never deletes); else 1-100000.
	StdoutLogMaxFiles int
	// ProcessesPerApplication is aspNetCore@processesPerApplication. Default 1,
	// range 1-100.
	ProcessesPerApplication int
	// DisableStartUpErrorPage is aspNetCore@disableStartUpErrorPage: answer a
	// failed start with a bare 502 instead of the 502.5 page. Default false.
	DisableStartUpErrorPage bool
	// HostingModel is aspNetCore@hostingModel. InProcess still runs out of
	// process; Warnings then carries a note saying so.
	HostingModel HostingModel

	// MaxAllowedContentLength is
	// system.webServer/security/requestFiltering/requestLimits@maxAllowedContentLength,
	// in bytes. Default 30000000. Larger request bodies get 413.
	MaxAllowedContentLength int64

	// HandlerSettings holds <handlerSettings> in document order. Use
	// HandlerSetting to look one up (case-insensitive, first match wins).
	HandlerSettings []Setting
	// ForwardResponseConnectionHeader is handler setting
	// forwardResponseConnectionHeader=true: the backend's Connection response
	// header reaches the client. Default false.
	ForwardResponseConnectionHeader bool
	// ForwardedForFormat is handler setting forwardedForFormat: how loopgate
	// writes the client address it appends to X-Forwarded-For. Default
	// ForwardedForIPPort ("ipPort", as the reference does); ForwardedForIP
	// ("ip") for apps that take the whole entry as an address (uvicorn,
	// Express's req.ip, Werkzeug's ProxyFix). Any other value is an error.
	ForwardedForFormat ForwardedForFormat
	// BackendProtocol is handler setting backendProtocol (loopgate's own;
	// issue 17): the protocol loopgate speaks to the app over loopback.
	// Default BackendHTTP1 ("http1", as the reference does); BackendH2C
	// ("h2c": HTTP/2 with prior knowledge, which gRPC needs end to end;
	// Kestrel needs Kestrel__EndpointDefaults__Protocols=Http2 for it).
	// Readiness, the shutdown request and every request then use HTTP/2.
	// Any other value is an error.
	BackendProtocol BackendProtocol
	// ConsoleRedirection is false only when handler setting
	// enableOutOfProcessConsoleRedirection is "false": the backend's stdout
	// and stderr are then discarded. Default true.
	ConsoleRedirection bool
	// DisallowRotationOnConfigChange is handler setting
	// disallowRotationOnConfigChange=true: a web.config change is recorded but
	// does not recycle the app. Default false.
	DisallowRotationOnConfigChange bool
	// DebugFile is the app's diagnostic log file, absolute: handler setting
	// debugFile, else ASPNETCORE_MODULE_DEBUG_FILE from Options.Environ
	// (Windows-translated; relative values resolved against Dir). When
	// neither is set and DebugLevel names the "file" location, it is
	// Dir/aspnetcore-debug.log; otherwise empty, meaning no file.
	DebugFile string
	// DebugLevel is handler setting debugLevel, else ASPNETCORE_MODULE_DEBUG:
	// a comma list of levels (error, warning, info, trace) and locations
	// (console, file, eventlog). Empty means no diagnostic log.
	DebugLevel string
	// AdditionalErrorPageLink is ANCM_ADDITIONAL_ERROR_PAGE_LINK from
	// Options.Environ: a URL the 502.5 page links to. Empty means none.
	AdditionalErrorPageLink string

	// App pool settings (issue 14): handler settings named after the IIS
	// application pool attributes they stand for, so that the same file
	// still deploys to IIS (ANCM ignores handler settings it does not know).
	// Durations are written like requestTimeout ([d.]hh:mm:ss, whole
	// seconds); 0 turns a setting off.

	// PeriodicRestartTime is handler setting periodicRestartTime (IIS
	// recycling/periodicRestart@time, whose default is 29 h): recycle each
	// process, overlapped, once it has been up this long. Default 0, off;
	// range 0-8760 h.
	PeriodicRestartTime time.Duration
	// PeriodicRestartRequests is handler setting periodicRestartRequests
	// (IIS recycling/periodicRestart@requests): recycle a process, overlapped,
	// once it has served this many requests. Default 0, off; range
	// 0-4294967295.
	PeriodicRestartRequests int64
	// PeriodicRestartPrivateMemory is handler setting
	// periodicRestartPrivateMemory (IIS recycling/periodicRestart@privateMemory),
	// in KB (1024 bytes, as IIS): recycle a process, overlapped, when its
	// process tree's private memory exceeds it (checked every few seconds;
	// on Linux its anonymous memory, not the page cache).
	// Default 0, off; range 0-4294967295.
	PeriodicRestartPrivateMemory int64
	// PeriodicRestartSchedule is handler setting periodicRestartSchedule
	// (IIS recycling/periodicRestart/schedule), a comma list of local times
	// of day written hh:mm (or hh:mm:ss as applicationHost.config writes
	// them): recycle the app's processes, overlapped, at each. Held as
	// offsets from local midnight, ascending, without duplicates. Default
	// empty, no schedule.
	PeriodicRestartSchedule []time.Duration
	// IdleTimeout is handler setting idleTimeout (IIS processModel@idleTimeout,
	// whose default is 20 min): stop the app's processes once no request
	// came for this long; the next request starts them. Default 0, off;
	// range 0-720 h. Not applied with StartMode AlwaysRunning (a warning).
	IdleTimeout time.Duration
	// StartMode is handler setting startMode (IIS applicationPool@startMode):
	// OnDemand (default) starts the app on its first request; AlwaysRunning
	// when loopgate starts and again after every stop that is not
	// app_offline.htm.
	StartMode StartMode
	// PingingEnabled is handler setting pingingEnabled (IIS
	// processModel@pingingEnabled, whose default is true): probe each process
	// with GET PingPath every PingInterval. Default false.
	PingingEnabled bool
	// PingPath is handler setting pingPath (loopgate's own: IIS pings its
	// worker over a pipe): the request target of the probe within the app;
	// the supervisor puts the virtual path before it, as it does for the
	// shutdown request ("/healthz" of an app at "/api" is GET
	// /api/healthz). Starts with "/", no whitespace or control characters,
	// no "#". Required when PingingEnabled; else may be empty.
	PingPath string
	// PingInterval is handler setting pingInterval (IIS
	// processModel@pingInterval): the time between two probes of a process.
	// Default 30 s; range 1 s-24 h.
	PingInterval time.Duration
	// PingResponseTime is handler setting pingResponseTime (IIS
	// processModel@pingResponseTime): a process that has answered no probe
	// for this long (counted from the first probe after its last answer) is
	// hung and replaced. Default 90 s; range 1 s-24 h.
	PingResponseTime time.Duration
	// QueueLength is handler setting queueLength (IIS
	// applicationPool@queueLength): requests waiting for a backend connection
	// beyond this many get 503 with Retry-After at once. Default 1000; range
	// 10-65535 as in IIS.
	QueueLength int
	// UserName is handler setting userName (IIS processModel@userName): the
	// user the app's processes run as (loopgate must be root), a name or a
	// numeric uid. Default empty: loopgate's own user. Not looked up here.
	UserName string
	// GroupName is handler setting groupName (loopgate's own; IIS takes the
	// group from the identity): the group the app's processes run as, a name
	// or a numeric gid. Default empty: UserName's primary group, or
	// loopgate's own group without UserName. Not looked up here.
	GroupName string
	// MemoryLimit is handler setting memoryLimit (IIS has no hard limit), in
	// bytes: the cgroup memory.max of the app. Written as a whole number of
	// bytes or with a K, M, G or T suffix (powers of 1024, as systemd's
	// MemoryMax=), e.g. 512M. Default 0, no limit; at least 1M otherwise.
	MemoryLimit int64
	// CPULimit is handler setting cpuLimit (IIS cpu@limit, which counts in
	// 1/1000 % of all CPUs), as a percentage of one CPU: the cgroup cpu.max of
	// the app, e.g. 150 for one and a half CPUs. Default 0, no limit; range
	// 0-100000.
	CPULimit int

	// Warnings are problems that do not stop the app (such as
	// hostingModel="inprocess" or an unknown attribute), each with its
	// location and Warning set, in file order. Equal ignores them.
	Warnings []Problem
}

// EnvVar is one backend environment variable from <environmentVariables>.
type EnvVar struct {
	Name  string
	Value string
}

// Setting is one <handlerSetting name value>.
type Setting struct {
	Name  string
	Value string
}

// ForwardedForFormat is how the client address is written into
// X-Forwarded-For.
type ForwardedForFormat uint8

const (
	// ForwardedForIPPort writes "203.0.113.7:51234" and "[2001:db8::7]:51234",
	// as the reference does (and ASP.NET Core expects).
	ForwardedForIPPort ForwardedForFormat = iota
	// ForwardedForIP writes "203.0.113.7" and "2001:db8::7".
	ForwardedForIP
)

func (f ForwardedForFormat) String() string {
	if f == ForwardedForIP {
		return "ip"
	}
	return "ipPort"
}

// StartMode is when an app's processes start (IIS applicationPool@startMode).
type StartMode uint8

const (
	// OnDemand starts the app on its first request (the default).
	OnDemand StartMode = iota
	// AlwaysRunning starts the app when loopgate starts, and again after every
	// stop that is not app_offline.htm.
	AlwaysRunning
)

func (m StartMode) String() string {
	if m == AlwaysRunning {
		return "AlwaysRunning"
	}
	return "OnDemand"
}

// BackendProtocol is the protocol spoken to the app over loopback.
type BackendProtocol uint8

const (
	// BackendHTTP1 is HTTP/1.1 on pooled keep-alive connections.
	BackendHTTP1 BackendProtocol = iota
	// BackendH2C is HTTP/2 without TLS, with prior knowledge (RFC 9113
	// §3.3), on a few multiplexed connections per process.
	BackendH2C
)

func (b BackendProtocol) String() string {
	if b == BackendH2C {
		return "h2c"
	}
	return "http1"
}

// HostingModel is aspNetCore@hostingModel.
type HostingModel uint8

const (
	// OutOfProcess is the model loopgate implements (also the empty value).
	OutOfProcess HostingModel = iota
	// InProcess is what the .NET SDK writes by default; loopgate runs such an
	// app out of process and warns.
	InProcess
)

func (m HostingModel) String() string {
	if m == InProcess {
		return "inprocess"
	}
	return "outofprocess"
}

// Problem is one thing wrong (or worth a warning) in a web.config, with its
// location. Its String is `file:line: attr="value": rule`, e.g.
// `/srv/app/web.config:7: startupTimeLimit="4000": out of range 0-3600`;
// see String for the variants.
type Problem struct {
	File  string // the web.config path; empty when not about a file (the virtual path)
	Line  int    // 1-based; 0 when the problem concerns the file as a whole
	Attr  string // attribute name (a variable's name for its value), or element name such as "<add>"; empty when not about one
	Value string // the offending value as written (attributes only)
	Rule  string // what is wrong, lowercase, no trailing period
	// Warning marks a problem that does not stop the app.
	Warning bool
}
