package supervisor

import "errors"

// Errors a start can fail with. They appear wrapped in logs and in
// AppStatus.LastStartError; errors.Is works on them.
var (
	// ErrPortRange: ASPNETCORE_PORT in <environmentVariables> is not an
	// integer in 1025-48000. A critical error: the start is not retried.
	ErrPortRange = errors.New("ASPNETCORE_PORT must be an integer in 1025-48000")
	// ErrNoFreePort: 10 random ports in 10000-48000 were all taken.
	ErrNoFreePort = errors.New("no free port in 10000-48000 after 10 tries")
	// ErrProcessNotFound: processPath resolves to no file. Critical.
	ErrProcessNotFound = errors.New("processPath not found")
	// ErrExited: the process exited before it listened on its port.
	ErrExited = errors.New("process exited before listening")
	// ErrStartTimeout: the process did not listen within startupTimeLimit.
	ErrStartTimeout = errors.New("process did not listen within startupTimeLimit")
	// ErrWrongPort: the process tree kept listening on other ports (or on
	// addresses 127.0.0.1 does not reach) and not on ASPNETCORE_PORT. The
	// error says where it listens. Critical.
	ErrWrongPort = errors.New("the app listens, but not on ASPNETCORE_PORT")
	// ErrStopping: the process was spawned after Kill began and was killed
	// at once. Critical.
	ErrStopping = errors.New("loopgate is stopping")
	// ErrNotHTTP2: an app with backendProtocol="h2c" answered on its port,
	// but not in HTTP/2 with prior knowledge (OS.ProbeH2C). The error
	// quotes the start of its answer. Critical.
	ErrNotHTTP2 = errors.New("the app answers on ASPNETCORE_PORT, but not in HTTP/2 without TLS (backendProtocol=\"h2c\"; Kestrel needs Kestrel__EndpointDefaults__Protocols=Http2)")
)

// ErrAppStopped is what App.Recycle answers for an app an operator has
// stopped (App.Stop): there is nothing to recycle until App.Start.
var ErrAppStopped = errors.New("the app is stopped; start it first")

// errCritical marks a start error that retrying cannot fix.
type errCritical struct{ error }

func (e errCritical) Unwrap() error { return e.error }
