package supervisor

import (
	"os"

	"github.com/loopgate/loopgate/configload"
)

// ResolveProcessPath finds the program a start of spec would run, the way
// the start does (the app directory, then the backend's PATH, then the
// ".exe"-less fallback), without starting anything. environ is the
// environment backends inherit (Options.Environ); a PATH in web.config wins
// over it, as on a start. The error wraps ErrProcessNotFound. loopgate check
// and serve use it to say "not found" before the first request does.
func ResolveProcessPath(spec *configload.AppSpec, environ []string) (string, error) {
	env := backendEnv(spec, environ, 0, "")
	return resolveProcessPath(spec, envLookup(env, "PATH"), os.Stat)
}
