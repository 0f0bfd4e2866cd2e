package supervisor

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loopgate/loopgate/configload"
)

// The variables the supervisor sets for every backend (spec §1.1).
const (
	envPort            = "ASPNETCORE_PORT"
	envToken           = "ASPNETCORE_TOKEN"
	envApplPath        = "ASPNETCORE_APPL_PATH"
	envHTTPAuth        = "ASPNETCORE_IIS_HTTPAUTH"
	envWebSockets      = "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED"
	envPhysicalPath    = "ASPNETCORE_IIS_PHYSICAL_PATH"
	envHostingStartup  = "ASPNETCORE_HOSTINGSTARTUPASSEMBLIES"
	iisIntegrationAsm  = "Microsoft.AspNetCore.Server.IISIntegration"
	portArgToken       = "%ASPNETCORE_PORT%"
	applPathArgToken   = "%ASPNETCORE_APPL_PATH%"
	minExplicitPort    = 1025
	maxPort            = 48000
	minRandomPort      = 10000
	portTries          = 10
	outputCaptureLimit = 30000 // bytes of output kept for a start-failure report
)

var managedEnv = [...]string{envPort, envToken, envApplPath, envHTTPAuth, envWebSockets, envPhysicalPath, envHostingStartup}

// configValue looks name up in the spec's <environmentVariables>
// case-insensitively, as the reference does for the variables it manages.
func configValue(spec *configload.AppSpec, name string) (string, bool) {
	for _, e := range spec.Environment {
		if strings.EqualFold(e.Name, name) {
			return e.Value, true
		}
	}
	return "", false
}

// explicitPort returns the ASPNETCORE_PORT set in web.config, 0 if none (an
// empty value also means none: a random port is chosen).
func explicitPort(spec *configload.AppSpec) (int, error) {
	v, ok := configValue(spec, envPort)
	if !ok || v == "" {
		return 0, nil
	}
	port, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || port < minExplicitPort || port > maxPort {
		return 0, fmt.Errorf("%s=%q in %s: %w", envPort, v, spec.ConfigFile, ErrPortRange)
	}
	return port, nil
}

// backendEnv builds a backend's environment (spec §1.1, §1.4): the
// inherited environment with web.config entries overriding entries of the
// same name, then the variables loopgate manages. Names are compared exactly
// (Linux environments are case-sensitive), except that a web.config entry
// naming a managed variable in any case is treated as that variable.
// configload has already applied %VAR% expansion and
// ANCM_PREFER_ENVIRONMENT_VARIABLES to the entries; what it left of
// %ASPNETCORE_PORT% and %ASPNETCORE_APPL_PATH% in their values is replaced
// here by this start's port and the virtual path (PORT=%ASPNETCORE_PORT%, as
// HttpPlatformHandler users write it). token comes from tokenFor.
func backendEnv(spec *configload.AppSpec, inherited []string, port int, token string) []string {
	env := make([]string, 0, len(inherited)+len(spec.Environment)+len(managedEnv))
	used := make([]bool, len(spec.Environment))
	sub := perStartReplacer(spec, port)
	inheritedStartup, hasInheritedStartup := "", false
	for _, kv := range inherited {
		name, val, _ := strings.Cut(kv, "=")
		if isManaged(name) {
			if name == envHostingStartup {
				inheritedStartup, hasInheritedStartup = val, true
			}
			continue
		}
		replaced := false
		for i, e := range spec.Environment {
			if e.Name == name {
				env = append(env, name+"="+sub.Replace(e.Value))
				used[i], replaced = true, true
				break
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	for i, e := range spec.Environment {
		if !used[i] && !isManaged(e.Name) {
			env = append(env, e.Name+"="+sub.Replace(e.Value))
		}
	}
	startup, ok := configValue(spec, envHostingStartup)
	if !ok {
		startup = hostingStartup(inheritedStartup, hasInheritedStartup)
	}
	return append(env,
		envPort+"="+strconv.Itoa(port),
		envToken+"="+token,
		envApplPath+"="+spec.VirtualPath,
		envHTTPAuth+"=anonymous;",
		envWebSockets+"=true",
		envPhysicalPath+"="+spec.Dir+"/",
		envHostingStartup+"="+startup,
	)
}

// hostingStartup appends the IIS integration assembly to the inherited list
// unless it is already there. Unlike the reference it adds no leading ';'
// when nothing is inherited (the .NET host ignores empty entries either way).
func hostingStartup(inherited string, ok bool) string {
	if !ok || inherited == "" {
		return iisIntegrationAsm
	}
	for _, a := range strings.Split(inherited, ";") {
		if strings.EqualFold(strings.TrimSpace(a), iisIntegrationAsm) {
			return inherited
		}
	}
	return inherited + ";" + iisIntegrationAsm
}

func isManaged(name string) bool {
	for _, m := range managedEnv {
		if strings.EqualFold(name, m) {
			return true
		}
	}
	return false
}

// tokenFor returns the pairing token a process is started with: the
// web.config value if one is set, else a fresh one.
func tokenFor(spec *configload.AppSpec, fresh func() string) string {
	if v, ok := configValue(spec, envToken); ok && v != "" {
		return v
	}
	return fresh()
}

// backendArgs replaces %ASPNETCORE_PORT% in each argument with the port
// chosen for this start and %ASPNETCORE_APPL_PATH% with the app's virtual
// path (DESIGN.md §4; configload writes the tokens back in upper case
// whatever case the file used).
func backendArgs(spec *configload.AppSpec, port int) []string {
	out := make([]string, len(spec.Arguments))
	sub := perStartReplacer(spec, port)
	for i, a := range spec.Arguments {
		out[i] = sub.Replace(a)
	}
	return out
}

// perStartReplacer substitutes the variables configload leaves for each
// start to fill in.
func perStartReplacer(spec *configload.AppSpec, port int) *strings.Replacer {
	return strings.NewReplacer(portArgToken, strconv.Itoa(port), applPathArgToken, spec.VirtualPath)
}

// resolveProcessPath finds the executable to spawn (spec §1.5): an absolute
// path is used as is; a relative path with a '/' is relative to the app
// directory; a bare name is tried in the app directory first, then in the
// directories of pathEnv (the backend's own PATH; relative PATH entries are
// skipped, as exec.LookPath refuses them). When that finds nothing,
// ProcessPathFallback ("X" for "X.exe") is tried the same way (DESIGN.md §4).
// Files are looked at with stat (the OS seam's Stat).
func resolveProcessPath(spec *configload.AppSpec, pathEnv string, stat func(string) (fs.FileInfo, error)) (string, error) {
	p, err := resolveOne(spec.Dir, spec.ProcessPath, pathEnv, stat)
	if err != nil && spec.ProcessPathFallback != "" {
		if p, err2 := resolveOne(spec.Dir, spec.ProcessPathFallback, pathEnv, stat); err2 == nil {
			return p, nil
		}
	}
	return p, err
}

func resolveOne(dir, name, pathEnv string, stat func(string) (fs.FileInfo, error)) (string, error) {
	isFile := func(p string) bool {
		fi, err := stat(p)
		return err == nil && !fi.IsDir()
	}
	switch {
	case filepath.IsAbs(name):
		if isFile(name) {
			return name, nil
		}
		return "", fmt.Errorf("%s: %w", name, ErrProcessNotFound)
	case strings.Contains(name, "/"):
		p := filepath.Join(dir, name)
		if isFile(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s: %w", p, ErrProcessNotFound)
	}
	if p := filepath.Join(dir, name); isFile(p) {
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not in %s nor in $PATH: %w", name, dir, ErrProcessNotFound)
}

// envLookup returns the value of name in env (exact match, last one wins as
// in exec.Cmd).
func envLookup(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
