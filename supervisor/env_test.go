package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

func TestBackendEnv(t *testing.T) {
	spec := &configload.AppSpec{
		Dir:         "/srv/app",
		VirtualPath: "/api",
		Environment: []configload.EnvVar{
			{Name: "HOME", Value: "/from/config"},         // overrides the inherited HOME in place
			{Name: "Path", Value: "/only/config/case"},    // not PATH: Linux names are case-sensitive
			{Name: "NEW", Value: "added"},                 // appended
			{Name: "aspnetcore_appl_path", Value: "/bad"}, // managed: overwritten, any case
			{Name: "PORT", Value: "%ASPNETCORE_PORT%"},    // this start's port
			{Name: "X", Value: "http://127.0.0.1:%ASPNETCORE_PORT%%ASPNETCORE_APPL_PATH%/"},
		},
	}
	inherited := []string{"PATH=/usr/bin", "HOME=/root", "ASPNETCORE_PORT=1", "ASPNETCORE_TOKEN=inherited", "X=1", "Y=%ASPNETCORE_PORT%"}
	env := backendEnv(spec, inherited, 12345, "tok")
	want := []string{
		// Only web.config values are substituted, not loopgate's own environment.
		"PATH=/usr/bin", "HOME=/from/config", "X=http://127.0.0.1:12345/api/", "Y=%ASPNETCORE_PORT%",
		"Path=/only/config/case", "NEW=added", "PORT=12345",
		"ASPNETCORE_PORT=12345", "ASPNETCORE_TOKEN=tok", "ASPNETCORE_APPL_PATH=/api",
		"ASPNETCORE_IIS_HTTPAUTH=anonymous;", "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=true",
		"ASPNETCORE_IIS_PHYSICAL_PATH=/srv/app/",
		"ASPNETCORE_HOSTINGSTARTUPASSEMBLIES=Microsoft.AspNetCore.Server.IISIntegration",
	}
	if !slices.Equal(env, want) {
		t.Errorf("env\n got %q\nwant %q", env, want)
	}
}

func TestHostingStartupAssemblies(t *testing.T) {
	const iis = "Microsoft.AspNetCore.Server.IISIntegration"
	cases := []struct {
		name      string
		inherited []string
		config    []configload.EnvVar
		want      string
	}{
		{"nothing inherited: no leading ';'", nil, nil, iis},
		{"appended to inherited", []string{"ASPNETCORE_HOSTINGSTARTUPASSEMBLIES=Asm1"}, nil, "Asm1;" + iis},
		{"not twice", []string{"ASPNETCORE_HOSTINGSTARTUPASSEMBLIES=Asm1;" + iis}, nil, "Asm1;" + iis},
		{"config wins unchanged", []string{"ASPNETCORE_HOSTINGSTARTUPASSEMBLIES=Asm1"},
			[]configload.EnvVar{{Name: "ASPNETCORE_HOSTINGSTARTUPASSEMBLIES", Value: "Asm2"}}, "Asm2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := &configload.AppSpec{Dir: "/a", VirtualPath: "/", Environment: c.config}
			env := backendEnv(spec, c.inherited, 20000, "t")
			if got := envLookup(env, envHostingStartup); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
			n := 0
			for _, kv := range env {
				if strings.HasPrefix(strings.ToUpper(kv), envHostingStartup+"=") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d entries for %s in %q", n, envHostingStartup, env)
			}
		})
	}
}

func TestTokenAndPortFromConfig(t *testing.T) {
	spec := &configload.AppSpec{ConfigFile: "/a/web.config", Environment: []configload.EnvVar{
		{Name: "ASPNETCORE_TOKEN", Value: "fixed-token"}, {Name: "ASPNETCORE_PORT", Value: "5000"}}}
	if got := tokenFor(spec, func() string { return "fresh" }); got != "fixed-token" {
		t.Errorf("token %q: the web.config value must win", got)
	}
	if p, err := explicitPort(spec); p != 5000 || err != nil {
		t.Errorf("explicit port %d, %v", p, err)
	}
	if got := tokenFor(&configload.AppSpec{}, func() string { return "fresh" }); got != "fresh" {
		t.Errorf("token %q", got)
	}
	for _, v := range []string{"1024", "48001", "noninteger"} {
		spec.Environment[1].Value = v
		if _, err := explicitPort(spec); !errors.Is(err, ErrPortRange) {
			t.Errorf("ASPNETCORE_PORT=%s: %v", v, err)
		}
	}
	spec.Environment[1].Value = "" // empty: a random port
	if p, err := explicitPort(spec); p != 0 || err != nil {
		t.Errorf("empty ASPNETCORE_PORT: %d, %v", p, err)
	}
}

func TestBackendArgs(t *testing.T) {
	spec := &configload.AppSpec{VirtualPath: "/api", Arguments: []string{"-m", "http.server", "%ASPNETCORE_PORT%", "--url=http://x:%ASPNETCORE_PORT%%ASPNETCORE_APPL_PATH%/", "%aspnetcore_port%"}}
	got := backendArgs(spec, 31000)
	// configload writes the tokens back in upper case: a lower-case one here
	// did not come from it and stays.
	want := []string{"-m", "http.server", "31000", "--url=http://x:31000/api/", "%aspnetcore_port%"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
}

func TestResolveProcessPath(t *testing.T) {
	dir := t.TempDir()
	bin := t.TempDir()
	exe := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe(filepath.Join(dir, "inapp"))
	exe(filepath.Join(dir, "sub", "tool"))
	exe(filepath.Join(bin, "onpath"))
	exe(filepath.Join(bin, "inapp")) // the app directory comes first
	exe(filepath.Join(dir, "MyApp"))
	os.WriteFile(filepath.Join(bin, "notexec"), nil, 0o644)
	path := "relative/dir:" + bin
	cases := []struct {
		processPath, fallback, want string
		err                         error
	}{
		{"inapp", "", filepath.Join(dir, "inapp"), nil},
		{"onpath", "", filepath.Join(bin, "onpath"), nil},
		{"./sub/tool", "", filepath.Join(dir, "sub", "tool"), nil},
		{"sub/tool", "", filepath.Join(dir, "sub", "tool"), nil},
		{filepath.Join(bin, "onpath"), "", filepath.Join(bin, "onpath"), nil},
		{"MyApp.exe", "MyApp", filepath.Join(dir, "MyApp"), nil},
		{"notexec", "", "", ErrProcessNotFound},
		{"missing", "", "", ErrProcessNotFound},
		{"./missing", "", "", ErrProcessNotFound},
	}
	for _, c := range cases {
		spec := &configload.AppSpec{Dir: dir, ProcessPath: c.processPath, ProcessPathFallback: c.fallback}
		got, err := resolveProcessPath(spec, path, os.Stat)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: got %q, %v; want %q, %v", c.processPath, got, err, c.want, c.err)
		}
	}
}

func TestStdoutLogName(t *testing.T) {
	at := time.Date(2018, 2, 5, 19, 41, 32, 0, time.FixedZone("x", 3600))
	if got := stdoutLogName("/srv/app/logs/stdout", at, 1934); got != "/srv/app/logs/stdout_20180205184132_1934.log" {
		t.Errorf("got %s (UTC expected)", got)
	}
}

func TestParseDebugLevel(t *testing.T) {
	cases := []struct {
		in            string
		ok            bool
		level         string
		file, console bool
	}{
		{"", false, "", false, false},
		{"file", true, "info", true, false},
		{"ERROR,console", true, "error", false, true},
		{"warn, trace ,file", true, "trace", true, false},
		{"eventlog", true, "info", false, true},
	}
	for _, c := range cases {
		d, ok := parseDebugLevel(c.in)
		if ok != c.ok || (ok && (d.level.String() != c.level || d.file != c.file || d.console != c.console)) {
			t.Errorf("%q: %+v %v", c.in, d, ok)
		}
	}
}

func TestRapidFailWindowSlides(t *testing.T) {
	var w rapidFailWindow
	t0 := time.Unix(1000, 0)
	w.add(t0)
	w.add(t0.Add(30 * time.Second))
	if w.blocked(t0.Add(31*time.Second), 2) {
		t.Error("2 failures blocked a limit of 2")
	}
	w.add(t0.Add(40 * time.Second))
	if !w.blocked(t0.Add(41*time.Second), 2) {
		t.Error("3 failures did not block a limit of 2")
	}
	if free := w.freeAt(2); !free.Equal(t0.Add(time.Minute)) {
		t.Errorf("free at %v", free)
	}
	if w.blocked(t0.Add(time.Minute), 2) {
		t.Error("the first failure did not leave the window after 60 s")
	}
}
