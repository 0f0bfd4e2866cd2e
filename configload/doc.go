// Package configload turns an app's web.config into an AppSpec.
//
// It is pure: bytes and paths go in, an immutable, deterministic *AppSpec
// comes out. It starts no process, opens no socket and never reads the
// process environment; the environment used for %VAR% expansion and the
// ANCM_* knobs is passed in explicitly through Options.
//
// Every problem found in a file is reported, each with the file, the line,
// the attribute and the rule it broke, the way `nginx -t` reports them.
package configload
