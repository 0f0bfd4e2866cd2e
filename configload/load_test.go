package configload

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The tests parse as if every file lived at /srv/app/web.config, so that
// problem texts are exact whatever the checkout's path.
const testFile = "/srv/app/web.config"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problemLines returns the problem texts of err, failing the test if err is
// not an *Error.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false")
	}
	var out []string
	for _, p := range e.Problems {
		out = append(out, p.String())
	}
	return out
}

func warningLines(s *AppSpec) []string {
	var out []string
	for _, w := range s.Warnings {
		if !w.Warning {
			panic("a warning without Warning set")
		}
		out = append(out, w.String())
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCorpus runs every file in testdata/ that should load, checking the
// whole spec and every warning.
func TestCorpus(t *testing.T) {
	tests := []struct {
		file     string
		environ  []string
		want     AppSpec
		warnings []string
	}{{
		// The framework-dependent web.config the ASP.NET Core docs publish.
		file: "framework-dependent/web.config",
		want: AppSpec{
			ProcessPath:             "dotnet",
			Arguments:               []string{"./MyApp.dll"},
			StdoutLogFile:           "/srv/app/logs/stdout",
			HostingModel:            InProcess,
			StartupTimeLimit:        120 * time.Second,
			ShutdownTimeLimit:       10 * time.Second,
			RapidFailsPerMinute:     10,
			RequestTimeout:          2 * time.Minute,
			ProcessesPerApplication: 1,
			MaxAllowedContentLength: 30000000,
			ConsoleRedirection:      true,
		},
		warnings: []string{`/srv/app/web.config:12: warning: hostingModel="inprocess": loopgate has no in-process hosting; the app runs out of process`},
	}, {
		// The self-contained one: MyApp.exe falls back to MyApp on Linux.
		file: "self-contained/web.config",
		want: AppSpec{
			ProcessPath:             "./MyApp.exe",
			ProcessPathFallback:     "./MyApp",
			StdoutLogFile:           "/srv/app/logs/stdout",
			HostingModel:            InProcess,
			StartupTimeLimit:        120 * time.Second,
			ShutdownTimeLimit:       10 * time.Second,
			RapidFailsPerMinute:     10,
			RequestTimeout:          2 * time.Minute,
			ProcessesPerApplication: 1,
			MaxAllowedContentLength: 30000000,
			ConsoleRedirection:      true,
		},
		warnings: []string{`/srv/app/web.config:11: warning: hostingModel="inprocess": loopgate has no in-process hosting; the app runs out of process`},
	}, {
		file: "defaults.config",
		want: AppSpec{
			ProcessPath:             "./server",
			StdoutLogFile:           "/srv/app/aspnetcore-stdout",
			StartupTimeLimit:        120 * time.Second,
			ShutdownTimeLimit:       10 * time.Second,
			RapidFailsPerMinute:     10,
			RequestTimeout:          2 * time.Minute,
			ProcessesPerApplication: 1,
			MaxAllowedContentLength: 30000000,
			ConsoleRedirection:      true,
		},
	}, {
		// Every attribute at its upper bound, booleans in odd cases.
		file:    "all-attributes.config",
		environ: []string{"who=World", "ASPNETCORE_PORT=9999"},
		want: AppSpec{
			ProcessPath:             "/usr/bin/dotnet",
			Arguments:               []string{"exec", "./my app.dll", "--urls", "http://127.0.0.1:%ASPNETCORE_PORT%"},
			Environment:             []EnvVar{{"ASPNETCORE_ENVIRONMENT", "Staging"}, {"GREETING", "World;Hello"}},
			StartupTimeLimit:        3600 * time.Second,
			ShutdownTimeLimit:       600 * time.Second,
			RapidFailsPerMinute:     100,
			RequestTimeout:          360 * time.Hour,
			StdoutLogEnabled:        true,
			StdoutLogFile:           "/var/log/myapp/stdout",
			ProcessesPerApplication: 100,
			DisableStartUpErrorPage: true,
			HostingModel:            OutOfProcess,
			MaxAllowedContentLength: 4294967295,
			HandlerSettings: []Setting{
				{"forwardResponseConnectionHeader", "true"},
				{"enableOutOfProcessConsoleRedirection", "true"},
				{"disallowRotationOnConfigChange", "TRUE"},
				{"debugLevel", "FILE,TRACE"},
				{"debugFile", `.\logs\ancm.log`},
			},
			ForwardResponseConnectionHeader: true,
			ConsoleRedirection:              true,
			DisallowRotationOnConfigChange:  true,
			DebugFile:                       "/srv/app/logs/ancm.log",
			DebugLevel:                      "FILE,TRACE",
		},
	}, {
		// Azure App Service style: \\?\ and %home%, relative Windows
		// arguments translated, others left alone.
		file:    "azure-app-service.config",
		environ: []string{"HOME=/home", "ANCM_ADDITIONAL_ERROR_PAGE_LINK=https://example.com/help"},
		want: AppSpec{
			ProcessPath:             "/home/site/wwwroot/MyApp.exe",
			Arguments:               []string{"../shared/plugin.dll", `C:\not\translated`, "-x", "./a/b"},
			StdoutLogEnabled:        true,
			StdoutLogFile:           "/home/LogFiles/stdout",
			StartupTimeLimit:        120 * time.Second,
			ShutdownTimeLimit:       10 * time.Second,
			RapidFailsPerMinute:     10,
			RequestTimeout:          2 * time.Minute,
			ProcessesPerApplication: 1,
			MaxAllowedContentLength: 30000000,
			ConsoleRedirection:      true,
			AdditionalErrorPageLink: "https://example.com/help",
		},
	}, {
		// Every lower bound; the port placeholder survives in any case
		// even when loopgate's own environment has ASPNETCORE_PORT.
		file:    "python-port-argument.config",
		environ: []string{"ASPNETCORE_PORT=1"},
		want: AppSpec{
			ProcessPath:             "python3",
			Arguments:               []string{"-m", "http.server", "%ASPNETCORE_PORT%", "--bind", "127.0.0.1"},
			StdoutLogFile:           "/srv/app/aspnetcore-stdout",
			ProcessesPerApplication: 1,
			ConsoleRedirection:      true,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Parse(testFile, readTestdata(t, tt.file), Options{Environ: tt.environ})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want.Dir, tt.want.ConfigFile, tt.want.VirtualPath = "/srv/app", testFile, "/"
			// No corpus file has app pool settings: their defaults.
			tt.want.PingInterval, tt.want.PingResponseTime, tt.want.QueueLength = 30*time.Second, 90*time.Second, 1000
			sameLines(t, "warnings", warningLines(got), tt.warnings)
			warnings := got.Warnings
			got.Warnings = nil
			if src := got.ProcessPathSource; src.File != testFile || src.Line == 0 || src.Attr != "processPath" || src.Value == "" || src.Rule != "" {
				t.Errorf("ProcessPathSource %#v", src)
			}
			got.ProcessPathSource = Problem{}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("spec:\n got %+v\nwant %+v", *got, tt.want)
			}
			got.Warnings = warnings
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestCorpusProblems runs the files in testdata/ that must be refused and
// checks every problem, in file order, with its line.
func TestCorpusProblems(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{{
		// One file, every kind of mistake: all reported together.
		file: "many-problems.config",
		want: []string{
			`/srv/app/web.config:4: processPath="": required`,
			`/srv/app/web.config:6: startupTimeLimit="4000": out of range 0-3600`,
			`/srv/app/web.config:7: shutdownTimeLimit="-1": not an unsigned integer (expected 0-600)`,
			`/srv/app/web.config:8: rapidFailsPerMinute="101": out of range 0-100`,
			`/srv/app/web.config:9: requestTimeout="00:60:00": minutes out of range 0-59`,
			`/srv/app/web.config:10: stdoutLogEnabled="yes": not a boolean (expected true or false)`,
			`/srv/app/web.config:11: processesPerApplication="0": out of range 1-100`,
			`/srv/app/web.config:12: hostingModel="sideways": must be inprocess or outofprocess (the reference refuses it: "Unknown hosting model")`,
			`/srv/app/web.config:13: warning: startuptimelimit="10": unknown attribute, ignored (attribute names are case-sensitive: did you mean startupTimeLimit?)`,
			`/srv/app/web.config:15: name="": required on <environmentVariable> and must not be empty`,
			`/srv/app/web.config:16: ASPNETCORE_PORT="1024": must be an integer 1025-48000 (the reference answers every request with 502.5)`,
			`/srv/app/web.config:17: <add>: not allowed in <environmentVariables>; use <environmentVariable name="..." value="..."/> (the reference fails to load the aspNetCore section)`,
			`/srv/app/web.config:22: maxAllowedContentLength="4294967296": out of range 0-4294967295`,
		},
	}, {
		file: "malformed-unclosed.config",
		want: []string{`/srv/app/web.config:5: malformed XML: element <aspNetCore> closed by </system.webServer>`},
	}, {
		file: "malformed-attribute.config",
		want: []string{`/srv/app/web.config:4: malformed XML: unquoted or missing attribute value in element`},
	}, {
		file: "malformed-two-roots.config",
		want: []string{`/srv/app/web.config:6: <configuration>: malformed XML: a second root element (the file must hold one <configuration>)`},
	}, {
		// An aspNetCore section for another path is not the app's.
		file: "no-section.config",
		want: []string{`/srv/app/web.config: no <aspNetCore> section in configuration/system.webServer or configuration/location[@path="."]/system.webServer`},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			spec, err := Parse(testFile, readTestdata(t, tt.file), Options{})
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", spec)
			}
			sameLines(t, "problems", problemLines(t, err), tt.want)
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Error():\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// aspNetCore wraps attributes and children into a minimal web.config whose
// aspNetCore element is on line 3.
func aspNetCore(attrs, children string) []byte {
	return []byte("<configuration>\n<system.webServer>\n<aspNetCore " + attrs + ">" + children +
		"</aspNetCore>\n</system.webServer>\n</configuration>\n")
}

// TestAttributeBounds puts each numeric, boolean and enumerated attribute
// at its bounds and one past them.
func TestAttributeBounds(t *testing.T) {
	tests := []struct {
		attr, value string
		get         func(*AppSpec) any
		want        any    // when valid
		rule        string // when invalid
	}{
		{"startupTimeLimit", "0", startup, time.Duration(0), ""},
		{"startupTimeLimit", "3600", startup, time.Hour, ""},
		{"startupTimeLimit", "3601", nil, nil, "out of range 0-3600"},
		{"startupTimeLimit", " 60 ", startup, time.Minute, ""},
		{"startupTimeLimit", "1e3", nil, nil, "not an unsigned integer (expected 0-3600)"},
		{"startupTimeLimit", "", nil, nil, "not an unsigned integer (expected 0-3600)"},
		{"startupTimeLimit", "99999999999999999999999", nil, nil, "out of range 0-3600"},
		{"shutdownTimeLimit", "0", shutdown, time.Duration(0), ""},
		{"shutdownTimeLimit", "600", shutdown, 10 * time.Minute, ""},
		{"shutdownTimeLimit", "601", nil, nil, "out of range 0-600"},
		{"shutdownTimeLimit", "-1", nil, nil, "not an unsigned integer (expected 0-600)"},
		{"rapidFailsPerMinute", "0", rapid, 0, ""},
		{"rapidFailsPerMinute", "100", rapid, 100, ""},
		{"rapidFailsPerMinute", "101", nil, nil, "out of range 0-100"},
		{"processesPerApplication", "1", procs, 1, ""},
		{"processesPerApplication", "100", procs, 100, ""},
		{"processesPerApplication", "0", nil, nil, "out of range 1-100"},
		{"processesPerApplication", "101", nil, nil, "out of range 1-100"},
		{"stdoutLogEnabled", "TrUe", stdoutOn, true, ""},
		{"stdoutLogEnabled", "false", stdoutOn, false, ""},
		{"stdoutLogEnabled", "1", nil, nil, "not a boolean (expected true or false)"},
		{"disableStartUpErrorPage", "TRUE", noErrorPage, true, ""},
		{"disableStartUpErrorPage", "on", nil, nil, "not a boolean (expected true or false)"},
		{"forwardWindowsAuthToken", "false", nil, nil, ""},
		{"forwardWindowsAuthToken", "no", nil, nil, "not a boolean (expected true or false)"},
		{"hostingModel", "", hosting, OutOfProcess, ""},
		{"hostingModel", "OUTOFPROCESS", hosting, OutOfProcess, ""},
		{"hostingModel", "InProcess", hosting, InProcess, ""},
		{"hostingModel", "out-of-process", nil, nil, `must be inprocess or outofprocess (the reference refuses it: "Unknown hosting model")`},
		{"requestTimeout", "0", timeout, time.Duration(0), ""},
		{"requestTimeout", "00:00:00", timeout, time.Duration(0), ""},
		{"requestTimeout", "00:00:01", timeout, time.Second, ""},
		{"requestTimeout", "00:02:00.0000000", timeout, 2 * time.Minute, ""},
		{"requestTimeout", "25:00:00", timeout, 25 * time.Hour, ""},
		{"requestTimeout", "360:00:00", timeout, 360 * time.Hour, ""},
		{"requestTimeout", "15.00:00:00", timeout, 360 * time.Hour, ""},
		{"requestTimeout", "1.23:59:59", timeout, 47*time.Hour + 59*time.Minute + 59*time.Second, ""},
		{"requestTimeout", "360:00:01", nil, nil, "out of range 00:00:00-360:00:00"},
		{"requestTimeout", "15.00:00:01", nil, nil, "out of range 00:00:00-360:00:00"},
		{"requestTimeout", "-00:00:01", nil, nil, "out of range 00:00:00-360:00:00"},
		{"requestTimeout", "00:59:59", timeout, 59*time.Minute + 59*time.Second, ""},
		{"requestTimeout", "00:60:00", nil, nil, "minutes out of range 0-59"},
		{"requestTimeout", "00:00:60", nil, nil, "seconds out of range 0-59"},
		{"requestTimeout", "1.24:00:00", nil, nil, "hours out of range 0-23 after a day part"},
		{"requestTimeout", "00:00:01.5", nil, nil, "not a whole number of seconds (granularity 1 s)"},
		{"requestTimeout", "00:02", nil, nil, "expected [d.]hh:mm:ss, e.g. 00:02:00"},
		{"requestTimeout", "120", nil, nil, "expected [d.]hh:mm:ss, e.g. 00:02:00"},
		{"requestTimeout", "aa:bb:cc", nil, nil, "expected [d.]hh:mm:ss, e.g. 00:02:00"},
		{"requestTimeout", "9999999999:00:00", nil, nil, "expected [d.]hh:mm:ss, e.g. 00:02:00"},
	}
	for _, tt := range tests {
		t.Run(tt.attr+"="+tt.value, func(t *testing.T) {
			data := aspNetCore(`processPath="x" `+tt.attr+`="`+tt.value+`"`, "")
			spec, err := Parse(testFile, data, Options{})
			if tt.rule != "" {
				want := `/srv/app/web.config:3: ` + tt.attr + `="` + tt.value + `": ` + tt.rule
				sameLines(t, "problems", problemLines(t, err), []string{want})
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.get != nil {
				if got := tt.get(spec); got != tt.want {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func startup(s *AppSpec) any     { return s.StartupTimeLimit }
func shutdown(s *AppSpec) any    { return s.ShutdownTimeLimit }
func rapid(s *AppSpec) any       { return s.RapidFailsPerMinute }
func procs(s *AppSpec) any       { return s.ProcessesPerApplication }
func stdoutOn(s *AppSpec) any    { return s.StdoutLogEnabled }
func noErrorPage(s *AppSpec) any { return s.DisableStartUpErrorPage }
func hosting(s *AppSpec) any     { return s.HostingModel }
func timeout(s *AppSpec) any     { return s.RequestTimeout }

func TestMaxAllowedContentLengthBounds(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  int64
		rule  string
	}{
		{"0", 0, ""},
		{"4294967295", 4294967295, ""},
		{"4294967296", 0, "out of range 0-4294967295"},
		{"-5", 0, "not an unsigned integer (expected 0-4294967295)"},
	} {
		data := []byte(`<configuration><system.webServer><aspNetCore processPath="x"/>
<security><requestFiltering>
<requestLimits maxUrl="1" maxAllowedContentLength="` + tt.value + `"/></requestFiltering></security>
</system.webServer></configuration>`)
		spec, err := Parse(testFile, data, Options{})
		if tt.rule != "" {
			sameLines(t, tt.value, problemLines(t, err), []string{`/srv/app/web.config:3: maxAllowedContentLength="` + tt.value + `": ` + tt.rule})
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.value, err)
		}
		if spec.MaxAllowedContentLength != tt.want {
			t.Errorf("%s: got %d", tt.value, spec.MaxAllowedContentLength)
		}
	}
}

func TestWindowsTranslation(t *testing.T) {
	tests := []struct {
		attrs        string
		environ      []string
		path, fallbk string
		args         []string
		stdout       string
		warnings     []string
	}{{
		attrs: `processPath=".\bin\MyApp.exe" arguments="..\data\x.json .\y &quot;.\with space\z&quot; a\b" stdoutLogFile=".\logs\out"`,
		path:  "./bin/MyApp.exe", fallbk: "./bin/MyApp",
		args:   []string{"../data/x.json", "./y", "./with space/z", `a\b`},
		stdout: "/srv/app/logs/out",
	}, {
		attrs: `processPath="MyApp.EXE"`,
		path:  "MyApp.EXE", fallbk: "MyApp", stdout: "/srv/app/aspnetcore-stdout",
	}, {
		// Absolute paths are never given a fallback.
		attrs: `processPath="/opt/app/MyApp.exe" stdoutLogFile="/var/log/../log/app/"`,
		path:  "/opt/app/MyApp.exe", stdout: "/var/log/app",
	}, {
		attrs: `processPath=".exe"`,
		path:  ".exe", stdout: "/srv/app/aspnetcore-stdout",
	}, {
		attrs: `processPath="C:\Program Files\dotnet\dotnet.exe" stdoutLogFile="D:\logs\out"`,
		path:  "C:/Program Files/dotnet/dotnet.exe", fallbk: "C:/Program Files/dotnet/dotnet", stdout: "/srv/app/D:/logs/out",
		warnings: []string{
			`/srv/app/web.config:3: warning: processPath="C:\Program Files\dotnet\dotnet.exe": a Windows drive path cannot exist on Linux; the app will fail to start`,
			`/srv/app/web.config:3: warning: stdoutLogFile="D:\logs\out": a Windows drive path cannot exist on Linux; it is taken as relative to the app directory`,
		},
	}}
	for _, tt := range tests {
		spec, err := Parse(testFile, aspNetCore(tt.attrs, ""), Options{Environ: tt.environ})
		if err != nil {
			t.Fatalf("%s: %v", tt.attrs, err)
		}
		if spec.ProcessPath != tt.path || spec.ProcessPathFallback != tt.fallbk || !slices.Equal(spec.Arguments, tt.args) || spec.StdoutLogFile != tt.stdout {
			t.Errorf("%s:\n got path %q fallback %q args %q stdout %q\nwant path %q fallback %q args %q stdout %q", tt.attrs,
				spec.ProcessPath, spec.ProcessPathFallback, spec.Arguments, spec.StdoutLogFile, tt.path, tt.fallbk, tt.args, tt.stdout)
		}
		sameLines(t, tt.attrs, warningLines(spec), tt.warnings)
	}
}

func TestExpand(t *testing.T) {
	env := newEnviron([]string{"A=alpha", "Path=exact", "PATH=upper", "EMPTY=", "PCT=50%", "=C:=C:\\", "noequals", "ASPNETCORE_PORT=80", "ASPNETCORE_APPL_PATH=/x"})
	tests := []struct {
		in       string
		perStart bool
		want     string
		unknown  []string
	}{
		{"plain", false, "plain", nil},
		{"%A%", false, "alpha", nil},
		{"%a%/%A%", false, "alpha/alpha", nil},
		{"%Path% %path% %PATH%", false, "exact exact upper", nil},
		{"x%EMPTY%y", false, "xy", nil},
		{"%PCT%%A%", false, "50%alpha", nil},
		{"%NOPE%", false, "%NOPE%", []string{"NOPE"}},
		{"%NOPE%A%", false, "%NOPEalpha", []string{"NOPE"}},
		{"%%", false, "%%", nil},
		{"%%A%", false, "%alpha", nil},
		{"%", false, "%", nil},
		{"100%", false, "100%", nil},
		{"50%-75%", false, "50%-75%", nil},
		{"a%b", false, "a%b", nil},
		{"%%%", false, "%%%", nil},
		{"%A", false, "%A", nil},
		{"%ProgramFiles(x86)%", false, "%ProgramFiles(x86)%", []string{"ProgramFiles(x86)"}},
		{"%ASPNETCORE_PORT%", false, "80", nil},
		{"--port=%aspnetcore_port% %A%", true, "--port=%ASPNETCORE_PORT% alpha", nil},
		{"%ASPNETCORE_APPL_PATH%", false, "/x", nil},
		{"%Aspnetcore_Appl_Path%/static:%ASPNETCORE_PORT%", true, "%ASPNETCORE_APPL_PATH%/static:%ASPNETCORE_PORT%", nil},
	}
	for _, tt := range tests {
		got, unknown := expand(tt.in, env, tt.perStart)
		if got != tt.want || !slices.Equal(unknown, tt.unknown) {
			t.Errorf("expand(%q) = %q %q, want %q %q", tt.in, got, unknown, tt.want, tt.unknown)
		}
	}
}

func TestExpansionInAttributes(t *testing.T) {
	environ := []string{"APPROOT=/opt/app", "LOGS=/var/log", "WHO=World", "port=1"}
	data := aspNetCore(`processPath="%APPROOT%\bin\server" arguments="--who %who% --port %ASPNETCORE_PORT% --x %UNSET%" stdoutLogFile="%logs%\app"`,
		`<environmentVariables><environmentVariable name="GREETING" value="%WHO%;Hello" /><environmentVariable name="KEEP" value="%MISSING%" />`+
			`<environmentVariable name="PORT" value="%aspnetcore_port%" /><environmentVariable name="SCRIPT_NAME" value="%ASPNETCORE_APPL_PATH%" /></environmentVariables>`)
	spec, err := Parse(testFile, data, Options{Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	if spec.ProcessPath != "/opt/app/bin/server" {
		t.Errorf("ProcessPath %q", spec.ProcessPath)
	}
	if want := []string{"--who", "World", "--port", "%ASPNETCORE_PORT%", "--x", "%UNSET%"}; !slices.Equal(spec.Arguments, want) {
		t.Errorf("Arguments %q, want %q", spec.Arguments, want)
	}
	if spec.StdoutLogFile != "/var/log/app" {
		t.Errorf("StdoutLogFile %q", spec.StdoutLogFile)
	}
	// The per-start variables are left for the supervisor, in upper case.
	want := []EnvVar{{"GREETING", "World;Hello"}, {"KEEP", "%MISSING%"}, {"PORT", "%ASPNETCORE_PORT%"}, {"SCRIPT_NAME", "%ASPNETCORE_APPL_PATH%"}}
	if !slices.Equal(spec.Environment, want) {
		t.Errorf("Environment %q, want %q", spec.Environment, want)
	}
	sameLines(t, "warnings", warningLines(spec), []string{
		`/srv/app/web.config:3: warning: arguments="--who %who% --port %ASPNETCORE_PORT% --x %UNSET%": %UNSET% is not set in loopgate's environment; left as written`,
		`/srv/app/web.config:3: warning: KEEP="%MISSING%": %MISSING% is not set in loopgate's environment; left as written`,
	})
}

func TestLauncherOverrides(t *testing.T) {
	data := aspNetCore(`processPath=".\MyApp.exe" arguments="--from-config"`, "")
	tests := []struct {
		environ []string
		path    string
		args    []string
	}{
		{nil, "./MyApp.exe", []string{"--from-config"}},
		{[]string{`ANCM_LAUNCHER_PATH=/usr/bin/dotnet`}, "/usr/bin/dotnet", []string{"--from-config"}},
		{[]string{`ANCM_LAUNCHER_ARGS=exec "bin/my app.dll" %ASPNETCORE_PORT%`}, "./MyApp.exe", []string{"exec", "bin/my app.dll", "%ASPNETCORE_PORT%"}},
		{[]string{`ancm_launcher_path=dotnet.exe`, `ANCM_LAUNCHER_ARGS=.\taken\as\given`}, "dotnet.exe", []string{`.\taken\as\given`}},
		// Empty means unset, as on Windows.
		{[]string{`ANCM_LAUNCHER_PATH=`, `ANCM_LAUNCHER_ARGS=`}, "./MyApp.exe", []string{"--from-config"}},
	}
	for _, tt := range tests {
		spec, err := Parse(testFile, data, Options{Environ: tt.environ})
		if err != nil {
			t.Fatalf("%q: %v", tt.environ, err)
		}
		if spec.ProcessPath != tt.path || !slices.Equal(spec.Arguments, tt.args) {
			t.Errorf("%q: got %q %q, want %q %q", tt.environ, spec.ProcessPath, spec.Arguments, tt.path, tt.args)
		}
	}
	// The launcher path makes processPath optional.
	spec, err := Parse(testFile, aspNetCore(``, ""), Options{Environ: []string{"ANCM_LAUNCHER_PATH=./run.exe"}})
	if err != nil {
		t.Fatal(err)
	}
	if spec.ProcessPath != "./run.exe" || spec.ProcessPathFallback != "./run" {
		t.Errorf("got %q fallback %q", spec.ProcessPath, spec.ProcessPathFallback)
	}
}

func TestSplitCommandLine(t *testing.T) {
	tests := []struct {
		in           string
		want         []string
		unterminated bool
	}{
		{``, nil, false},
		{"  \t ", nil, false},
		{`a b  c`, []string{"a", "b", "c"}, false},
		{"a\tb", []string{"a", "b"}, false},
		{`"a b" c`, []string{"a b", "c"}, false},
		{`a"b c"d`, []string{"ab cd"}, false},
		{`""`, []string{""}, false},
		{`a "" b`, []string{"a", "", "b"}, false},
		{`a\b`, []string{`a\b`}, false},
		{`a\\b`, []string{`a\\b`}, false},
		{`a\"b`, []string{`a"b`}, false},
		{`a\\"b c"`, []string{`a\b c`}, false},
		{`a\\\"b`, []string{`a\"b`}, false},
		{`"a\\" b`, []string{`a\`, "b"}, false},
		{`"a""b c`, []string{`a"b`, "c"}, false},
		{`"a""b" c`, []string{`a"b c`}, true},
		{`"unterminated x`, []string{"unterminated x"}, true},
		{`exec "C:\dir with space\app.dll" extra arguments`, []string{"exec", `C:\dir with space\app.dll`, "extra", "arguments"}, false},
		{`trailing\`, []string{`trailing\`}, false},
	}
	for _, tt := range tests {
		got, unterminated := splitCommandLine(tt.in)
		if !slices.Equal(got, tt.want) || unterminated != tt.unterminated {
			t.Errorf("splitCommandLine(%q) = %q %v, want %q %v", tt.in, got, unterminated, tt.want, tt.unterminated)
		}
	}
	spec, err := Parse(testFile, aspNetCore(`processPath="x" arguments="&quot;open"`, ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "warnings", warningLines(spec), []string{`/srv/app/web.config:3: warning: arguments="\"open": unterminated double quote; the rest of the line is one argument`})
}

func TestEnvironmentVariables(t *testing.T) {
	vars := `<environmentVariables>
<environmentVariable name="ASPNETCORE_ENVIRONMENT" value="Development" />
<environmentVariable name="Shared" value="%FROM_HOST%" />
<environmentVariable name="aspnetcore_environment" value="Production" />
<clear />
<environmentVariable name="A" value="1" />
<environmentVariable name="SHARED" value="from-config" />
<environmentVariable name="ASPNETCORE_PORT" value="" />
<environmentVariable name="ASPNETCORE_APPL_PATH" value="/x" />
</environmentVariables>`
	data := aspNetCore(`processPath="x"`, vars)
	spec, err := Parse(testFile, data, Options{Environ: []string{"FROM_HOST=h", "shared=from-host"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []EnvVar{{"A", "1"}, {"SHARED", "from-config"}, {"ASPNETCORE_APPL_PATH", "/x"}}; !slices.Equal(spec.Environment, want) {
		t.Errorf("Environment %q, want %q", spec.Environment, want)
	}
	sameLines(t, "warnings", warningLines(spec), []string{
		`/srv/app/web.config:7: warning: <clear>: drops the 3 entries above it`,
		`/srv/app/web.config:11: warning: name="ASPNETCORE_APPL_PATH": set by loopgate on every start; this value is overwritten`,
	})

	// Without clear: the later duplicate overwrites in place, keeping the
	// first spelling and position.
	spec, err = Parse(testFile, aspNetCore(`processPath="x"`, `<environmentVariables>
<environmentVariable name="Mode" value="a" /><environmentVariable name="Z" value="z" /><environmentVariable name="MODE" value="b" />
</environmentVariables>`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []EnvVar{{"Mode", "b"}, {"Z", "z"}}; !slices.Equal(spec.Environment, want) {
		t.Errorf("Environment %q, want %q", spec.Environment, want)
	}

	// ANCM_PREFER_ENVIRONMENT_VARIABLES: the host's value wins for names it
	// has (unexpanded); others are expanded as usual.
	prefer := aspNetCore(`processPath="x"`, `<environmentVariables>
<environmentVariable name="ASPNETCORE_ENVIRONMENT" value="Production" />
<environmentVariable name="OTHER" value="%WHO%" />
</environmentVariables>`)
	for _, tt := range []struct {
		knob string
		want []EnvVar
	}{
		{"1", []EnvVar{{"ASPNETCORE_ENVIRONMENT", "%WHO%-dev"}, {"OTHER", "w"}}},
		{"TRUE", []EnvVar{{"ASPNETCORE_ENVIRONMENT", "%WHO%-dev"}, {"OTHER", "w"}}},
		{"0", []EnvVar{{"ASPNETCORE_ENVIRONMENT", "Production"}, {"OTHER", "w"}}},
		{"", []EnvVar{{"ASPNETCORE_ENVIRONMENT", "Production"}, {"OTHER", "w"}}},
	} {
		environ := []string{"aspnetcore_environment=%WHO%-dev", "WHO=w", "ANCM_PREFER_ENVIRONMENT_VARIABLES=" + tt.knob}
		spec, err := Parse(testFile, prefer, Options{Environ: environ})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(spec.Environment, tt.want) {
			t.Errorf("prefer=%q: %q, want %q", tt.knob, spec.Environment, tt.want)
		}
	}
}

func TestExplicitPort(t *testing.T) {
	for _, tt := range []struct {
		value, environ string
		procs          string
		ok             bool
		line           string // the warning (ok) or error (not ok) expected, if any
	}{
		{"1025", "", "1", true, ""},
		{"48000", "", "1", true, ""},
		{"%P%", "P=5000", "1", true, ""},
		{"1024", "", "1", false, ""},
		{"48001", "", "1", false, ""},
		{"noninteger", "", "1", false, ""},
		{" 5000", "", "1", false, ""},
		{"%P%", "", "1", false, ""},
		{"%P%", "P=80", "1", false, `/srv/app/web.config:4: ASPNETCORE_PORT="%P%": is "80" after expansion; must be an integer 1025-48000 (the reference answers every request with 502.5)`},
		{"5000", "", "2", true, `/srv/app/web.config:4: warning: ASPNETCORE_PORT="5000": every one of the 2 processes (processesPerApplication) gets this port; all but one will fail to listen`},
	} {
		data := aspNetCore(`processPath="x" processesPerApplication="`+tt.procs+`"`, "<environmentVariables>\n"+
			`<environmentVariable name="ASPNETCORE_PORT" value="`+tt.value+`" /></environmentVariables>`)
		spec, err := Parse(testFile, data, Options{Environ: []string{tt.environ}})
		if !tt.ok {
			got := slices.DeleteFunc(problemLines(t, err), func(l string) bool { return strings.Contains(l, ": warning: ") })
			if tt.line != "" && (len(got) != 1 || got[0] != tt.line) {
				t.Errorf("%q: problems %q, want %q", tt.value, got, tt.line)
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], `/srv/app/web.config:4: ASPNETCORE_PORT="`) ||
				!strings.HasSuffix(got[0], `must be an integer 1025-48000 (the reference answers every request with 502.5)`) {
				t.Errorf("%q: problems %q", tt.value, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.value, err)
		}
		var want []string
		if tt.line != "" {
			want = []string{tt.line}
		}
		sameLines(t, tt.value, warningLines(spec), want)
	}
}

func TestCollectionsProblems(t *testing.T) {
	data := aspNetCore(`processPath="x"`, `
<environmentVariables>
  <environmentVariable name="NOVALUE" />
  <environmentVariable name="A=B" value="1" extra="2" />
  <remove name="X" />
</environmentVariables>
<handlerSettings>
  <add name="debugLevel" value="trace" />
  <handlerSetting value="orphan" />
</handlerSettings>
<environmentVariable name="MISPLACED" value="1" />`)
	_, err := Parse(testFile, data, Options{})
	sameLines(t, "problems", problemLines(t, err), []string{
		`/srv/app/web.config:5: <environmentVariable name="NOVALUE">: value is required (use value="" for an empty one)`,
		`/srv/app/web.config:6: name="A=B": must not contain "=" (Linux cannot pass such a variable)`,
		`/srv/app/web.config:6: warning: extra="2": unknown attribute, ignored`,
		`/srv/app/web.config:7: <remove>: not allowed in <environmentVariables>; use <environmentVariable name="..." value="..."/> (the reference fails to load the aspNetCore section)`,
		`/srv/app/web.config:10: <add>: not allowed in <handlerSettings>; use <handlerSetting name="..." value="..."/> (the reference fails to load the aspNetCore section)`,
		`/srv/app/web.config:11: name="": required on <handlerSetting> and must not be empty`,
		`/srv/app/web.config:13: warning: <environmentVariable>: unknown element in <aspNetCore>, ignored (expected environmentVariables, handlerSettings, recycleOnFileChange)`,
	})
}

func TestHandlerSettings(t *testing.T) {
	settings := func(xml string) []byte {
		return aspNetCore(`processPath="x" stdoutLogEnabled="true"`, "<handlerSettings>\n"+xml+"</handlerSettings>")
	}
	spec, err := Parse(testFile, settings(`<handlerSetting name="DebugLevel" value="file" />
<handlerSetting name="debuglevel" value="error" />
<handlerSetting name="forwardResponseConnectionHeader" value="yes" />
<handlerSetting name="enableOutOfProcessConsoleRedirection" value="FALSE" />
<handlerSetting name="handlerVersion" value="2.0.0" />
<handlerSetting name="debugFlie" value="typo" />
`), Options{Environ: []string{"ASPNETCORE_MODULE_DEBUG=trace", "ASPNETCORE_MODULE_DEBUG_FILE=/tmp/env.log"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := spec.HandlerSetting("DEBUGLEVEL"); !ok || v != "file" {
		t.Errorf("HandlerSetting(DEBUGLEVEL) = %q %v, want the first one", v, ok)
	}
	if _, ok := spec.HandlerSetting("missing"); ok {
		t.Error("HandlerSetting(missing) found something")
	}
	// The handler setting beats the environment for the level; the file
	// then comes from the environment, which is set.
	if spec.DebugLevel != "file" || spec.DebugFile != "/tmp/env.log" {
		t.Errorf("debug %q %q", spec.DebugLevel, spec.DebugFile)
	}
	if spec.ForwardResponseConnectionHeader || spec.ConsoleRedirection {
		t.Errorf("forward %v redirection %v", spec.ForwardResponseConnectionHeader, spec.ConsoleRedirection)
	}
	sameLines(t, "warnings", warningLines(spec), []string{
		`/srv/app/web.config:5: warning: name="debuglevel": duplicate of line 4 (names are case-insensitive); the first wins, this one is ignored`,
		`/srv/app/web.config:6: warning: forwardResponseConnectionHeader="yes": not true or false; taken as false as the reference does`,
		`/srv/app/web.config:7: warning: enableOutOfProcessConsoleRedirection="false": stdoutLogEnabled has no effect: the app's output is discarded`,
		`/srv/app/web.config:9: warning: name="debugFlie": unknown handler setting, ignored (did you mean debugFile?)`,
	})

	for _, tt := range []struct {
		xml     string
		environ []string
		level   string
		file    string
	}{
		{``, nil, "", ""},
		{``, []string{"ASPNETCORE_MODULE_DEBUG=console,trace"}, "console,trace", ""},
		{``, []string{"ASPNETCORE_MODULE_DEBUG=FileOnly"}, "FileOnly", "/srv/app/aspnetcore-debug.log"},
		{``, []string{"ASPNETCORE_MODULE_DEBUG_FILE=logs\\d.log"}, "", "/srv/app/logs/d.log"},
		{`<handlerSetting name="debugFile" value="..\shared\d.log" />`, []string{"ASPNETCORE_MODULE_DEBUG_FILE=/env.log"}, "", "/srv/shared/d.log"},
		{`<handlerSetting name="debugLevel" value="warning, file" />`, nil, "warning, file", "/srv/app/aspnetcore-debug.log"},
	} {
		spec, err := Parse(testFile, settings(tt.xml), Options{Environ: tt.environ})
		if err != nil {
			t.Fatal(err)
		}
		if spec.DebugLevel != tt.level || spec.DebugFile != tt.file {
			t.Errorf("%s %q: got %q %q, want %q %q", tt.xml, tt.environ, spec.DebugLevel, spec.DebugFile, tt.level, tt.file)
		}
	}

	spec, err = Parse(testFile, settings(`<handlerSetting name="debugLevel" value="verbose,TRACE" />`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "warnings", warningLines(spec), []string{
		`/srv/app/web.config:4: warning: debugLevel="verbose,TRACE": unknown item "verbose", ignored (known: error, warning, info, trace, console, file, eventlog)`,
	})
}

func TestSections(t *testing.T) {
	// Sections may be split between the root and location path=".";
	// locations for other paths and unknown sections are ignored.
	data := []byte(`<?xml version="1.0" encoding="utf-8"?>
<configuration xmlns:xdt="http://schemas.microsoft.com/XML-Document-Transform">
  <location path="." inheritInChildApplications="false">
    <system.webServer>
      <aspNetCore processPath="dotnet" xdt:Transform="SetAttributes" lockItem="true" forwardWindowsAuthToken="true">
        <recycleOnFileChange><file path="appsettings.json" /></recycleOnFileChange>
      </aspNetCore>
    </system.webServer>
  </location>
  <location path="admin">
    <system.webServer>
      <security><requestFiltering><requestLimits maxAllowedContentLength="1" /></requestFiltering></security>
    </system.webServer>
  </location>
  <system.webServer>
    <handlers><add name="aspNetCore" path="*" verb="*" modules="AspNetCoreModuleV2" resourceType="Unspecified" /></handlers>
    <security><requestFiltering><requestLimits maxAllowedContentLength="1000" /></requestFiltering></security>
  </system.webServer>
  <appSettings />
</configuration>`)
	var logs bytes.Buffer
	spec, err := Parse(testFile, data, Options{Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if spec.ProcessPath != "dotnet" || spec.MaxAllowedContentLength != 1000 || len(spec.Warnings) != 0 {
		t.Errorf("got %q %d %v", spec.ProcessPath, spec.MaxAllowedContentLength, spec.Warnings)
	}
	for _, want := range []string{`"ignored":"<location path=\"admin\">"`, `"ignored":"<handlers>"`, `"ignored":"<appSettings>"`, `"ignored":"Transform"`, `"ignored":"lockItem"`,
		`"ignored":"forwardWindowsAuthToken"`, `"ignored":"<recycleOnFileChange>"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no debug line with %s in:\n%s", want, logs.String())
		}
	}

	// The same section twice is refused, wherever the copies are.
	dup := []byte(`<configuration>
<location path=""><system.webServer><aspNetCore processPath="a" /></system.webServer></location>
<system.webServer>
<aspNetCore processPath="b" />
</system.webServer>
</configuration>`)
	_, err = Parse(testFile, dup, Options{})
	sameLines(t, "problems", problemLines(t, err), []string{`/srv/app/web.config:4: <aspNetCore>: duplicate element (the first is at line 2)`})
}

func TestMalformed(t *testing.T) {
	for _, tt := range []struct {
		name string
		data string
		want string
	}{
		{"empty", "", `/srv/app/web.config: no XML element: the file must hold a <configuration> element`},
		{"text", "hello", `/srv/app/web.config:1: malformed XML: text outside the root element`},
		{"root", "<?xml version=\"1.0\"?>\n\n<config/>", `/srv/app/web.config:3: <config>: the root element must be <configuration>`},
		{"utf16", "\xff\xfe<\x00", `/srv/app/web.config:1: file is UTF-16; save it as UTF-8`},
		{"encoding", `<?xml version="1.0" encoding="utf-16"?><configuration/>`, `/srv/app/web.config:1: malformed XML: encoding "utf-16" declared but Decoder.CharsetReader is nil`},
		{"duplicate attribute", "<configuration>\n<system.webServer>\n<aspNetCore processPath=\"a\"\n processPath=\"b\"/></system.webServer></configuration>",
			`/srv/app/web.config:4: processPath="b": duplicate attribute (XML allows each attribute once per element)`},
		{"eof", "<configuration>\n<system.webServer>", `/srv/app/web.config:2: malformed XML: unexpected EOF`},
		{"configSource", `<configuration><system.webServer><aspNetCore configSource="asp.config" processPath="x"/></system.webServer></configuration>`,
			`/srv/app/web.config:1: configSource="asp.config": not supported: loopgate reads sections only from web.config itself`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(testFile, []byte(tt.data), Options{})
			sameLines(t, "problems", problemLines(t, err), []string{tt.want})
		})
	}

	// A UTF-8 byte-order mark, as Windows editors write, is fine.
	if _, err := Parse(testFile, append([]byte("\xef\xbb\xbf"), readTestdata(t, "defaults.config")...), Options{}); err != nil {
		t.Errorf("BOM: %v", err)
	}
}

func TestVirtualPath(t *testing.T) {
	for _, tt := range []struct{ in, want, rule string }{
		{"", "/", ""},
		{"/", "/", ""},
		{"/api", "/api", ""},
		{"/api/", "/api", ""},
		{"/api/v1", "/api/v1", ""},
		{"/caf%C3%A9", "/caf%C3%A9", ""},
		{"api", "", `must start with "/"`},
		{"/a//b", "", `must not contain an empty segment ("//")`},
		{"//", "", `must not contain an empty segment ("//")`},
		{"/a/../b", "", `must not contain "." or ".." segments`},
		{"/./a", "", `must not contain "." or ".." segments`},
		{"/a?b", "", `must not contain "?" or "#"`},
		{"/a#b", "", `must not contain "?" or "#"`},
		{"/a b", "", "must not contain whitespace or control characters"},
		{"/a\x00", "", "must not contain whitespace or control characters"},
	} {
		got, err := CleanVirtualPath(tt.in)
		if tt.rule == "" {
			if err != nil || got != tt.want {
				t.Errorf("CleanVirtualPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			spec, err := Parse(testFile, readTestdata(t, "defaults.config"), Options{VirtualPath: tt.in})
			if err != nil || spec.VirtualPath != tt.want {
				t.Errorf("Parse with %q: %v", tt.in, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.HasSuffix(err.Error(), tt.rule) {
			t.Errorf("CleanVirtualPath(%q) = %q, %v; want an ErrInvalid ending %q", tt.in, got, err, tt.rule)
		}
		// Parse reports it along with the file's own problems.
		_, err = Parse(testFile, aspNetCore(`processPath=""`, ""), Options{VirtualPath: tt.in})
		sameLines(t, "problems", problemLines(t, err), []string{
			`virtual path=` + quoteValue(tt.in) + `: ` + tt.rule,
			`/srv/app/web.config:3: processPath="": required`,
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.config"), readTestdata(t, "framework-dependent/web.config"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := Load(dir, Options{VirtualPath: "/shop/"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Dir != dir || spec.ConfigFile != filepath.Join(dir, "web.config") || spec.VirtualPath != "/shop" ||
		spec.StdoutLogFile != filepath.Join(dir, "logs", "stdout") {
		t.Errorf("got %+v", spec)
	}
	if err := spec.Validate(); err != nil {
		t.Error(err)
	}

	missing := filepath.Join(dir, "nope")
	_, err = Load(missing, Options{})
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(missing, "web.config")) {
		t.Errorf("missing web.config: %v", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("a missing file is not an invalid configuration: %v", err)
	}
}

func TestEqual(t *testing.T) {
	data := readTestdata(t, "all-attributes.config")
	opts := Options{Environ: []string{"WHO=x"}}
	a, err := Parse(testFile, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(testFile, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) || !reflect.DeepEqual(a, b) {
		t.Error("two parses of the same input differ")
	}
	// A comment moves every line (and so the warnings) but changes nothing.
	moved, err := Parse(testFile, append([]byte("<!-- note -->\n"), data...), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(moved) {
		t.Error("a comment line made the spec differ")
	}
	changed, err := Parse(testFile, bytes.Replace(data, []byte(`shutdownTimeLimit="600"`), []byte(`shutdownTimeLimit="599"`), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(changed) {
		t.Error("a changed shutdownTimeLimit left the spec Equal")
	}
	otherEnv, err := Parse(testFile, data, Options{Environ: []string{"WHO=y"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(otherEnv) {
		t.Error("a changed expansion left the spec Equal")
	}
	if a.Equal(nil) || !(*AppSpec)(nil).Equal(nil) {
		t.Error("nil handling")
	}
}

func TestValidate(t *testing.T) {
	good, err := Parse(testFile, readTestdata(t, "self-contained/web.config"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		mutate func(*AppSpec)
		want   string
	}{
		{"dir", func(s *AppSpec) { s.Dir, s.ConfigFile = "rel", "rel/web.config" }, `rel/web.config: Dir="rel": must be an absolute, cleaned path`},
		{"vpath", func(s *AppSpec) { s.VirtualPath = "/a/" }, `/srv/app/web.config: VirtualPath="/a/": must be a clean virtual path (see CleanVirtualPath)`},
		{"path", func(s *AppSpec) { s.ProcessPath = ""; s.ProcessPathFallback = "" }, `/srv/app/web.config: ProcessPath="": required`},
		{"fallback", func(s *AppSpec) { s.ProcessPathFallback = "./Other" }, `/srv/app/web.config: ProcessPathFallback="./Other": must be the relative ProcessPath without its .exe`},
		{"startup", func(s *AppSpec) { s.StartupTimeLimit = 3601 * time.Second }, `/srv/app/web.config: StartupTimeLimit="1h0m1s": must be whole seconds 0-3600`},
		{"timeout", func(s *AppSpec) { s.RequestTimeout = 1500 * time.Millisecond }, `/srv/app/web.config: RequestTimeout="1.5s": must be whole seconds 0-1296000`},
		{"procs", func(s *AppSpec) { s.ProcessesPerApplication = 0 }, `/srv/app/web.config: ProcessesPerApplication="0": out of range 1-100`},
		{"stdout", func(s *AppSpec) { s.StdoutLogFile = "logs/x" }, `/srv/app/web.config: StdoutLogFile="logs/x": must be an absolute, cleaned path`},
		{"port", func(s *AppSpec) { s.Environment = []EnvVar{{"ASPNETCORE_PORT", "80"}} }, `/srv/app/web.config: Environment="ASPNETCORE_PORT=80": ASPNETCORE_PORT must be an integer 1025-48000`},
		{"dup env", func(s *AppSpec) { s.Environment = []EnvVar{{"A", "1"}, {"a", "2"}} }, `/srv/app/web.config: Environment="a": duplicate name (names are case-insensitive)`},
		{"model", func(s *AppSpec) { s.HostingModel = 7 }, `/srv/app/web.config: HostingModel="7": must be OutOfProcess or InProcess`},
		{"limit", func(s *AppSpec) { s.MaxAllowedContentLength = -1 }, `/srv/app/web.config: MaxAllowedContentLength="-1": out of range 0-4294967295`},
	} {
		s := *good
		tt.mutate(&s)
		err := s.Validate()
		sameLines(t, tt.name, problemLines(t, err), []string{tt.want})
	}
}

func TestForwardedForFormatSetting(t *testing.T) {
	parse := func(xml string) (*AppSpec, error) {
		return Parse(testFile, aspNetCore(`processPath="x"`, "<handlerSettings>\n"+xml+"</handlerSettings>"), Options{})
	}
	for xml, want := range map[string]ForwardedForFormat{
		``: ForwardedForIPPort,
		`<handlerSetting name="forwardedForFormat" value="ipPort" />`: ForwardedForIPPort,
		`<handlerSetting name="ForwardedForFormat" value="IP" />`:     ForwardedForIP,
	} {
		spec, err := parse(xml)
		if err != nil || spec.ForwardedForFormat != want || len(spec.Warnings) != 0 {
			t.Errorf("%s: %v %v %v", xml, spec, err, err)
		}
	}
	_, err := parse(`<handlerSetting name="forwardedForFormat" value="ip:port" />`)
	if err == nil || err.Error() != `/srv/app/web.config:4: forwardedForFormat="ip:port": must be ipPort (the reference's 203.0.113.7:51234) or ip (203.0.113.7)` {
		t.Errorf("bad value: %v", err)
	}
	a, _ := parse(``)
	b, _ := parse(`<handlerSetting name="forwardedForFormat" value="ip" />`)
	if a.Equal(b) {
		t.Error("specs differing in forwardedForFormat are Equal: a change would not recycle")
	}
}

func TestStdoutLogRotationSettings(t *testing.T) {
	parse := func(attrs, xml string) (*AppSpec, error) {
		return Parse(testFile, aspNetCore(`processPath="x" `+attrs, "<handlerSettings>\n"+xml+"</handlerSettings>"), Options{})
	}
	spec, err := parse(`stdoutLogEnabled="true"`, `<handlerSetting name="stdoutLogMaxBytes" value="10485760" />
<handlerSetting name="StdoutLogMaxFiles" value="5" />
`)
	if err != nil || spec.StdoutLogMaxBytes != 10485760 || spec.StdoutLogMaxFiles != 5 || len(spec.Warnings) != 0 {
		t.Fatalf("%+v %v", spec, err)
	}
	_, err = parse(`stdoutLogEnabled="true"`, `<handlerSetting name="stdoutLogMaxBytes" value="10MB" />
<handlerSetting name="stdoutLogMaxFiles" value="-1" />
<handlerSetting name="stdoutLogMaxBytes" value="100" />
`)
	sameLines(t, "problems", problemLines(t, err), []string{
		`/srv/app/web.config:4: stdoutLogMaxBytes="10MB": not an unsigned integer (expected 0-1099511627776) bytes; 0: no limit`,
		`/srv/app/web.config:5: stdoutLogMaxFiles="-1": not an unsigned integer (expected 0-100000); 0: keep every file`,
		`/srv/app/web.config:6: warning: name="stdoutLogMaxBytes": duplicate of line 4 (names are case-insensitive); the first wins, this one is ignored`,
	})
	spec, err = parse(``, `<handlerSetting name="stdoutLogMaxFiles" value="3" />
`)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "warnings", warningLines(spec), []string{
		`/srv/app/web.config:4: warning: <handlerSetting>: stdoutLogMaxBytes and stdoutLogMaxFiles apply only with stdoutLogEnabled="true"`,
	})
}

func TestBackendProtocolSetting(t *testing.T) {
	parse := func(xml string) (*AppSpec, error) {
		return Parse(testFile, aspNetCore(`processPath="x"`, "<handlerSettings>\n"+xml+"</handlerSettings>"), Options{})
	}
	for xml, want := range map[string]BackendProtocol{
		``: BackendHTTP1,
		`<handlerSetting name="backendProtocol" value="http1" />`: BackendHTTP1,
		`<handlerSetting name="BackendProtocol" value="H2C" />`:   BackendH2C,
	} {
		spec, err := parse(xml)
		if err != nil || spec.BackendProtocol != want || len(spec.Warnings) != 0 {
			t.Errorf("%s: %v %v", xml, spec, err)
		}
	}
	_, err := parse(`<handlerSetting name="backendProtocol" value="http2" />`)
	if err == nil || err.Error() != `/srv/app/web.config:4: backendProtocol="http2": must be http1 (HTTP/1.1, the default) or h2c (HTTP/2 without TLS, for gRPC)` {
		t.Errorf("bad value: %v", err)
	}
	a, _ := parse(``)
	b, _ := parse(`<handlerSetting name="backendProtocol" value="h2c" />`)
	if a.Equal(b) {
		t.Error("specs differing in backendProtocol are Equal: a change would not recycle")
	}
	b.BackendProtocol = 7
	if b.Validate() == nil {
		t.Error("Validate accepted BackendProtocol 7")
	}
}
