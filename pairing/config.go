package pairing

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// The environment variables loopgate (like the ASP.NET Core Module) sets for
// the backend it starts (ancm-spec.md §1.1).
const (
	EnvPort     = "ASPNETCORE_PORT"
	EnvApplPath = "ASPNETCORE_APPL_PATH"
	EnvToken    = "ASPNETCORE_TOKEN"
)

// Config is the hosting contract as the app receives it. It is a plain
// value: safe to copy and to share between goroutines.
type Config struct {
	// Port is ASPNETCORE_PORT: the decimal TCP port on 127.0.0.1 the app
	// must listen on.
	Port string
	// ApplPath is ASPNETCORE_APPL_PATH: the virtual path the app is mounted
	// at, "/" for the root. The middleware strips it from request paths.
	ApplPath string
	// Token is ASPNETCORE_TOKEN: the pairing token every request from
	// loopgate carries in MS-ASPNETCORE-TOKEN. Keep it secret: String
	// redacts it.
	Token string
}

// FromEnv reads the contract from the process environment. The boolean is
// Hosted: false when the app runs on its own.
func FromEnv() (Config, bool) {
	return FromEnviron(os.Environ())
}

// FromEnviron reads the contract from environ, a list of "NAME=value"
// entries as os.Environ returns it; later duplicates win, as in os.Getenv
// on Linux. The boolean is Hosted.
func FromEnviron(environ []string) (Config, bool) {
	var c Config
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch name {
		case EnvPort:
			c.Port = value
		case EnvApplPath:
			c.ApplPath = value
		case EnvToken:
			c.Token = value
		}
	}
	return c, c.Hosted()
}

// Hosted reports whether the app runs behind loopgate (or IIS): like
// ASP.NET Core, only when port, path and token are all non-empty
// (ancm-spec.md §6.1). When it is false the middleware does nothing.
func (c Config) Hosted() bool {
	return c.Port != "" && c.ApplPath != "" && c.Token != ""
}

// ListenAddr returns the address the app should listen on:
// "127.0.0.1:$ASPNETCORE_PORT" when hosted (loopgate connects there, and
// only there, so one binary can run both behind loopgate and alone),
// otherwise fallback.
func ListenAddr(fallback string) string {
	c, hosted := FromEnv()
	if !hosted {
		return fallback
	}
	return net.JoinHostPort("127.0.0.1", c.Port)
}

// String describes c without revealing the token, so a Config can be
// logged as a whole.
func (c Config) String() string {
	return "port=" + strconv.Quote(c.Port) + " appl_path=" + strconv.Quote(c.ApplPath) +
		" token=<" + strconv.Itoa(len(c.Token)) + " bytes>"
}
