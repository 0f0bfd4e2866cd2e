package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeApp creates an app directory holding webConfig and returns it.
func writeApp(t *testing.T, name, webConfig string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(webConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const docsWebConfig = `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <location path="." inheritInChildApplications="false">
    <system.webServer>
      <handlers>
        <add name="aspNetCore" path="*" verb="*" modules="AspNetCoreModuleV2" resourceType="Unspecified" />
      </handlers>
      <aspNetCore processPath="dotnet" arguments=".\MyApp.dll" stdoutLogEnabled="false" stdoutLogFile=".\logs\stdout" hostingModel="inprocess" />
    </system.webServer>
  </location>
</configuration>
`

const pythonWebConfig = `<configuration>
  <system.webServer>
    <aspNetCore processPath="%PYTHON%" arguments="-m http.server %ASPNETCORE_PORT% --directory &quot;my files&quot;" processesPerApplication="2" />
  </system.webServer>
</configuration>
`

const brokenWebConfig = `<configuration>
  <system.webServer>
    <aspNetCore processPath="dotnet"
                startupTimeLimit="4000"
                hostingModel="inprocess"
                requestTimeout="00:60:00" />
  </system.webServer>
</configuration>
`

// check runs loopgate check with a PATH that holds a dotnet (a stand-in
// script), as on a machine where the .NET runtime is installed.
func check(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dotnet"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code = runCheck(args, []string{"PYTHON=/usr/bin/python3", "PATH=" + bin}, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckValid(t *testing.T) {
	shop := writeApp(t, "shop", docsWebConfig)
	api := writeApp(t, "api", pythonWebConfig)
	code, stdout, stderr := check(t, shop, "/api/="+api)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	wantOut := `/ -> ` + shop + `: dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)` + "\n" +
		`/api -> ` + api + `: /usr/bin/python3 -m http.server %ASPNETCORE_PORT% --directory "my files" (processes=2, hostingModel=outofprocess, warnings=0)` + "\n"
	if stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, wantOut)
	}
	wantErr := filepath.Join(shop, "web.config") + `:8: warning: hostingModel="inprocess": loopgate has no in-process hosting; the app runs out of process` + "\n"
	if stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
}

func TestCheckProblems(t *testing.T) {
	good := writeApp(t, "good", docsWebConfig)
	bad := writeApp(t, "bad", brokenWebConfig)
	code, stdout, stderr := check(t, "/good="+good, "/bad="+bad)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if stdout != "" {
		t.Errorf("a failed check printed summaries:\n%s", stdout)
	}
	file := filepath.Join(bad, "web.config")
	want := filepath.Join(good, "web.config") + `:8: warning: hostingModel="inprocess": loopgate has no in-process hosting; the app runs out of process
` + file + `:4: startupTimeLimit="4000": out of range 0-3600
` + file + `:5: warning: hostingModel="inprocess": loopgate has no in-process hosting; the app runs out of process
` + file + `:6: requestTimeout="00:60:00": minutes out of range 0-59
loopgate check: failed: 2 errors, 2 warnings
`
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
}

func TestCheckArguments(t *testing.T) {
	app := writeApp(t, "app", docsWebConfig)
	// A directory whose name holds "=" is taken as a directory.
	eq := writeApp(t, "a=b", docsWebConfig)
	missing := filepath.Join(t.TempDir(), "missing")

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string // substrings, in order
	}{
		{"no app", nil, 2, "", []string{"loopgate check: no APP given", "usage: loopgate check APP..."}},
		{"only --", []string{"--"}, 2, "", []string{"no APP given"}},
		{"help", []string{"--help"}, 0, checkUsage, nil},
		{"unknown flag", []string{"--listen", app}, 2, "", []string{`loopgate check: unknown flag "--listen"`}},
		{"equals dir", []string{eq}, 0, "/ -> " + eq + ": dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)\n", nil},
		{"dash dash", []string{"--", "/x=" + app}, 0, "/x -> " + app + ": dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)\n", nil},
		{"duplicate root", []string{app, "/=" + eq}, 2, "", []string{`loopgate check: APP "/=` + eq + `": virtual path / is already used by APP "` + app + `"`}},
		{"duplicate cleaned", []string{"/a=" + app, "/a/=" + eq}, 2, "", []string{`virtual path /a is already used by APP "/a=` + app + `"`}},
		{"bad vpath", []string{"api=" + app}, 2, "", []string{`loopgate check: APP "api=` + app + `": virtual path="api": must start with "/"`, "failed: 1 error"}},
		{"no dir", []string{"/api="}, 2, "", []string{`loopgate check: APP "/api=": no directory after "/api="`}},
		{"missing dir", []string{missing}, 2, "", []string{`loopgate check: APP "` + missing + `": read web.config: open ` + filepath.Join(missing, "web.config") + `: no such file or directory`}},
		// Every bad argument is reported, and the good apps are still checked.
		{"all reported", []string{"x=" + app, missing, "/b=" + app}, 2, "", []string{`virtual path="x"`, missing, `hostingModel="inprocess"`, "failed: 2 errors, 1 warning"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := check(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if stdout != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.stdout)
			}
			rest := stderr
			for _, want := range tt.stderr {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stderr lacks %q (in order):\n%s", want, stderr)
				}
				rest = rest[i+len(want):]
			}
			if tt.stderr == nil && code == 0 && strings.Contains(stderr, "loopgate check:") {
				t.Errorf("unexpected stderr:\n%s", stderr)
			}
		})
	}
}

// TestCheckProcessPath: check looks for processPath as a start would. An
// absolute path that is not there is an error (and serve refuses it the
// same way); a program that may still appear before the first request (in
// the app directory, or on PATH) is a warning.
func TestCheckProcessPath(t *testing.T) {
	cfg := func(path string) string {
		return `<configuration>
  <system.webServer>
    <aspNetCore processPath="` + path + `" />
  </system.webServer>
</configuration>
`
	}
	later := "; the app fails to start unless it is there by the first request"
	for _, c := range []struct {
		name, path string
		setup      func(dir string)
		code       int
		want       string // the problem after "web.config:3: "; "" for none
	}{
		{"absolute missing", "/nonexistent/bin/app", nil, 2, `processPath="/nonexistent/bin/app": not found`},
		{"bare missing", "hello", nil, 0, `warning: processPath="hello": not found in DIR or on PATH` + later},
		{"relative missing", `.\bin\app`, nil, 0, `warning: processPath=".\bin\app": not found: no DIR/bin/app` + later},
		{"exe missing", "MyApp.exe", nil, 0, `warning: processPath="MyApp.exe": not found in DIR or on PATH (nor MyApp, its Linux name)` + later},
		{"inside the app dir", "%APPDIR%/app", nil, 0, `warning: processPath="%APPDIR%/app": not found` + later},
		{"not executable", "run.sh", func(dir string) { os.WriteFile(filepath.Join(dir, "run.sh"), []byte("echo"), 0o644) }, 0,
			`warning: processPath="run.sh": DIR/run.sh is not executable (mode 0644): chmod +x it, or name its interpreter in processPath and the file in arguments` + later},
		{"exe fallback found", "run.exe", func(dir string) { os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh"), 0o755) }, 0, ""},
		{"on PATH", "dotnet", nil, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeApp(t, "app", cfg(c.path))
			if c.setup != nil {
				c.setup(dir)
			}
			c.path = strings.ReplaceAll(c.path, "%APPDIR%", dir)
			os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg(c.path)), 0o644)
			c.want = strings.ReplaceAll(strings.ReplaceAll(c.want, "%APPDIR%", dir), "DIR", dir)
			code, _, stderr := check(t, dir)
			var want string
			if c.want != "" {
				want = filepath.Join(dir, "web.config") + ":3: " + c.want + "\n"
			}
			if c.code != 0 {
				want += "loopgate check: failed: 1 error, 0 warnings\n"
			}
			if code != c.code || stderr != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and:\n%s", code, stderr, c.code, want)
			}
			if c.code == 0 {
				return
			}
			// serve refuses what check refuses, with the same line.
			var out, errOut bytes.Buffer
			if code := runServe([]string{"--listen", "127.0.0.1:0", "--admin=", "--accel", "off", dir}, []string{"PATH=/usr/bin:/bin"}, &out, &errOut); code != exitUsage ||
				!strings.Contains(errOut.String(), filepath.Join(dir, "web.config")+":3: "+c.want+"\n") {
				t.Errorf("serve: exit %d, stderr:\n%s", code, errOut.String())
			}
		})
	}
}

// TestCheckVirtualPathsInAnyCase: requests are routed case-insensitively,
// so /API and /api are one mount point for check as for serve.
func TestCheckVirtualPathsInAnyCase(t *testing.T) {
	a := writeApp(t, "a", docsWebConfig)
	b := writeApp(t, "b", docsWebConfig)
	want := `APP "/api=` + b + `": virtual path /api is already used by APP "/API=` + a + `" (virtual paths match in any case)`
	code, stdout, stderr := check(t, "/API="+a, "/api="+b)
	if code != 2 || stdout != "" || !strings.Contains(stderr, "loopgate check: "+want+"\n") {
		t.Errorf("check: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if _, err := parseServe([]string{"/API=" + a, "/api=" + b}); err == nil || err.Error() != want {
		t.Errorf("serve: %v", err)
	}
}
