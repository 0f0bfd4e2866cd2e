package configload

import (
	"reflect"
	"testing"
	"time"
)

// poolConfig is a web.config whose handler settings are xml; the first
// setting is on line 4.
func poolConfig(xml string) []byte {
	return aspNetCore(`processPath="x"`, "<handlerSettings>\n"+xml+"</handlerSettings>")
}

func setting(name, value string) string {
	return `<handlerSetting name="` + name + `" value="` + value + `" />` + "\n"
}

func TestPoolDefaults(t *testing.T) {
	s, err := Parse(testFile, poolConfig(""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.PeriodicRestartTime != 0 || s.PeriodicRestartRequests != 0 || s.PeriodicRestartPrivateMemory != 0 ||
		s.PeriodicRestartSchedule != nil || s.IdleTimeout != 0 || s.StartMode != OnDemand || s.PingingEnabled ||
		s.PingPath != "" || s.PingInterval != 30*time.Second || s.PingResponseTime != 90*time.Second ||
		s.QueueLength != 1000 || s.UserName != "" || s.GroupName != "" || s.MemoryLimit != 0 || s.CPULimit != 0 {
		t.Errorf("defaults: %+v", s)
	}
}

// TestPoolSettings gives each app pool setting valid values (at its bounds,
// in each accepted form) and invalid ones, with the exact problem line.
func TestPoolSettings(t *testing.T) {
	ping := setting("pingingEnabled", "true") // line 4; the setting under test is on line 5
	tests := []struct {
		name, value string
		before      string // settings on the lines above (each shifts the line by one)
		get         func(*AppSpec) any
		want        any    // when valid
		rule        string // when invalid: the whole problem text
	}{
		{"periodicRestartTime", "0", "", func(s *AppSpec) any { return s.PeriodicRestartTime }, time.Duration(0), ""},
		{"periodicRestartTime", "1.05:00:00", "", func(s *AppSpec) any { return s.PeriodicRestartTime }, 29 * time.Hour, ""},
		{"periodicRestartTime", "00:00:05", "", func(s *AppSpec) any { return s.PeriodicRestartTime }, 5 * time.Second, ""},
		{"periodicRestartTime", "8760:00:00", "", func(s *AppSpec) any { return s.PeriodicRestartTime }, 8760 * time.Hour, ""},
		{"PERIODICRESTARTTIME", "01:00:00", "", func(s *AppSpec) any { return s.PeriodicRestartTime }, time.Hour, ""},
		{"periodicRestartTime", "8760:00:01", "", nil, nil, `/srv/app/web.config:4: periodicRestartTime="8760:00:01": out of range 00:00:00-8760:00:00`},
		{"periodicRestartTime", "29h", "", nil, nil, `/srv/app/web.config:4: periodicRestartTime="29h": expected [d.]hh:mm:ss, e.g. 00:02:00`},
		{"periodicRestartTime", "00:00:01.5", "", nil, nil, `/srv/app/web.config:4: periodicRestartTime="00:00:01.5": not a whole number of seconds (granularity 1 s)`},

		{"periodicRestartRequests", "5", "", func(s *AppSpec) any { return s.PeriodicRestartRequests }, int64(5), ""},
		{"periodicRestartRequests", "4294967295", "", func(s *AppSpec) any { return s.PeriodicRestartRequests }, int64(4294967295), ""},
		{"periodicRestartRequests", "4294967296", "", nil, nil, `/srv/app/web.config:4: periodicRestartRequests="4294967296": out of range 0-4294967295`},
		{"periodicRestartRequests", "-1", "", nil, nil, `/srv/app/web.config:4: periodicRestartRequests="-1": not an unsigned integer (expected 0-4294967295)`},

		{"periodicRestartPrivateMemory", "524288", "", func(s *AppSpec) any { return s.PeriodicRestartPrivateMemory }, int64(524288), ""},
		{"periodicRestartPrivateMemory", "512M", "", nil, nil, `/srv/app/web.config:4: periodicRestartPrivateMemory="512M": not an unsigned integer (expected 0-4294967295)`},

		{"periodicRestartSchedule", "", "", func(s *AppSpec) any { return s.PeriodicRestartSchedule }, []time.Duration(nil), ""},
		{"periodicRestartSchedule", "23:59, 3:00,12:30:15", "", func(s *AppSpec) any { return s.PeriodicRestartSchedule },
			[]time.Duration{3 * time.Hour, 12*time.Hour + 30*time.Minute + 15*time.Second, 23*time.Hour + 59*time.Minute}, ""},
		{"periodicRestartSchedule", "03:00,24:00", "", nil, nil, `/srv/app/web.config:4: periodicRestartSchedule="03:00,24:00": "24:00" is not a local time hh:mm from 00:00 to 23:59`},
		{"periodicRestartSchedule", "03:00,", "", nil, nil, `/srv/app/web.config:4: periodicRestartSchedule="03:00,": an empty item (a stray comma?); expected a comma list of local times hh:mm`},
		{"periodicRestartSchedule", "3am", "", nil, nil, `/srv/app/web.config:4: periodicRestartSchedule="3am": "3am" is not a local time hh:mm from 00:00 to 23:59`},
		{"periodicRestartSchedule", "03:5", "", nil, nil, `/srv/app/web.config:4: periodicRestartSchedule="03:5": "03:5" is not a local time hh:mm from 00:00 to 23:59`},

		{"idleTimeout", "00:20:00", "", func(s *AppSpec) any { return s.IdleTimeout }, 20 * time.Minute, ""},
		{"idleTimeout", "00:00:01", "", func(s *AppSpec) any { return s.IdleTimeout }, time.Second, ""},
		{"idleTimeout", "30.00:00:00", "", func(s *AppSpec) any { return s.IdleTimeout }, 720 * time.Hour, ""},
		{"idleTimeout", "30.00:00:01", "", nil, nil, `/srv/app/web.config:4: idleTimeout="30.00:00:01": out of range 00:00:00-720:00:00`},
		{"idleTimeout", "1.24:00:00", "", nil, nil, `/srv/app/web.config:4: idleTimeout="1.24:00:00": hours out of range 0-23 after a day part`},
		{"idleTimeout", "720:00:01", "", nil, nil, `/srv/app/web.config:4: idleTimeout="720:00:01": out of range 00:00:00-720:00:00`},

		{"startMode", "AlwaysRunning", "", func(s *AppSpec) any { return s.StartMode }, AlwaysRunning, ""},
		{"startMode", "alwaysrunning", "", func(s *AppSpec) any { return s.StartMode }, AlwaysRunning, ""},
		{"startMode", "OnDemand", "", func(s *AppSpec) any { return s.StartMode }, OnDemand, ""},
		{"startMode", "Always", "", nil, nil, `/srv/app/web.config:4: startMode="Always": must be OnDemand or AlwaysRunning`},

		{"pingPath", "/healthz?probe=1", ping, func(s *AppSpec) any { return s.PingPath }, "/healthz?probe=1", ""},
		{"pingingEnabled", "TRUE", setting("pingPath", "/"), func(s *AppSpec) any { return s.PingingEnabled }, true, ""},
		{"pingingEnabled", "yes", "", nil, nil, `/srv/app/web.config:4: pingingEnabled="yes": not a boolean (expected true or false)`},
		{"pingPath", "healthz", ping, nil, nil, `/srv/app/web.config:5: pingPath="healthz": must start with "/" (the path to GET, e.g. /healthz)`},
		{"pingPath", "/a b", ping, nil, nil, `/srv/app/web.config:5: pingPath="/a b": must not contain whitespace, control or non-ASCII characters (percent-encode them)`},
		{"pingPath", "/a#b", ping, nil, nil, `/srv/app/web.config:5: pingPath="/a#b": must not contain "#"`},
		{"pingInterval", "00:00:01", "", func(s *AppSpec) any { return s.PingInterval }, time.Second, ""},
		{"pingInterval", "24:00:00", "", func(s *AppSpec) any { return s.PingInterval }, 24 * time.Hour, ""},
		{"pingInterval", "0", "", nil, nil, `/srv/app/web.config:4: pingInterval="0": must be at least 00:00:01 (pingingEnabled="false" turns pinging off)`},
		{"pingInterval", "24:00:01", "", nil, nil, `/srv/app/web.config:4: pingInterval="24:00:01": out of range 00:00:00-24:00:00`},
		{"pingResponseTime", "00:00:02", "", func(s *AppSpec) any { return s.PingResponseTime }, 2 * time.Second, ""},
		{"pingResponseTime", "00:00:00", "", nil, nil, `/srv/app/web.config:4: pingResponseTime="00:00:00": must be at least 00:00:01 (pingingEnabled="false" turns pinging off)`},

		{"queueLength", "10", "", func(s *AppSpec) any { return s.QueueLength }, 10, ""},
		{"queueLength", "65535", "", func(s *AppSpec) any { return s.QueueLength }, 65535, ""},
		{"queueLength", "9", "", nil, nil, `/srv/app/web.config:4: queueLength="9": out of range 10-65535`},
		{"queueLength", "65536", "", nil, nil, `/srv/app/web.config:4: queueLength="65536": out of range 10-65535`},

		{"userName", "www-data", "", func(s *AppSpec) any { return s.UserName }, "www-data", ""},
		{"userName", "1001", "", func(s *AppSpec) any { return s.UserName }, "1001", ""},
		{"userName", "", "", func(s *AppSpec) any { return s.UserName }, "", ""},
		{"groupName", "app_pool.1", "", func(s *AppSpec) any { return s.GroupName }, "app_pool.1", ""},
		{"userName", `IIS APPPOOL\Site`, "", nil, nil, `/srv/app/web.config:4: userName="IIS APPPOOL\Site": must be a name of letters, digits, "_", "." and "-" (not starting with "-", at most 32 characters) or a numeric id`},
		{"groupName", "-g", "", nil, nil, `/srv/app/web.config:4: groupName="-g": must be a name of letters, digits, "_", "." and "-" (not starting with "-", at most 32 characters) or a numeric id`},
		{"userName", "4294967295", "", nil, nil, `/srv/app/web.config:4: userName="4294967295": a numeric id must be 0-4294967294`},

		{"memoryLimit", "512M", "", func(s *AppSpec) any { return s.MemoryLimit }, int64(512 << 20), ""},
		{"memoryLimit", "2g", "", func(s *AppSpec) any { return s.MemoryLimit }, int64(2 << 30), ""},
		{"memoryLimit", "1048576", "", func(s *AppSpec) any { return s.MemoryLimit }, int64(1 << 20), ""},
		{"memoryLimit", "0", "", func(s *AppSpec) any { return s.MemoryLimit }, int64(0), ""},
		{"memoryLimit", "1023K", "", nil, nil, `/srv/app/web.config:4: memoryLimit="1023K": at least 1M (0 means no limit)`},
		{"memoryLimit", "512MB", "", nil, nil, `/srv/app/web.config:4: memoryLimit="512MB": expected bytes or a whole number with K, M, G or T (powers of 1024), e.g. 512M`},
		{"memoryLimit", "1.5G", "", nil, nil, `/srv/app/web.config:4: memoryLimit="1.5G": expected bytes or a whole number with K, M, G or T (powers of 1024), e.g. 512M`},
		{"memoryLimit", "4194305T", "", nil, nil, `/srv/app/web.config:4: memoryLimit="4194305T": too large (at most 4194304T)`},

		{"cpuLimit", "150", "", func(s *AppSpec) any { return s.CPULimit }, 150, ""},
		{"cpuLimit", "100000", "", func(s *AppSpec) any { return s.CPULimit }, 100000, ""},
		{"cpuLimit", "100001", "", nil, nil, `/srv/app/web.config:4: cpuLimit="100001": out of range 0-100000`},
		{"cpuLimit", "50%", "", nil, nil, `/srv/app/web.config:4: cpuLimit="50%": not an unsigned integer (expected 0-100000)`},
	}
	for _, tt := range tests {
		s, err := Parse(testFile, poolConfig(tt.before+setting(tt.name, tt.value)), Options{})
		if tt.rule != "" {
			if err == nil {
				t.Errorf("%s=%q: accepted, want %s", tt.name, tt.value, tt.rule)
				continue
			}
			sameLines(t, tt.name+"="+tt.value, problemLines(t, err), []string{tt.rule})
			continue
		}
		if err != nil {
			t.Errorf("%s=%q: %v", tt.name, tt.value, err)
			continue
		}
		if got := tt.get(s); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s=%q: got %v, want %v", tt.name, tt.value, got, tt.want)
		}
		if len(s.Warnings) != 0 {
			t.Errorf("%s=%q: warnings %v", tt.name, tt.value, warningLines(s))
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s=%q: Validate: %v", tt.name, tt.value, err)
		}
	}
}

// TestPoolCombinations covers the rules between settings, and unknown names.
func TestPoolCombinations(t *testing.T) {
	for _, tt := range []struct {
		xml      string
		errs     []string
		warnings []string
	}{
		{xml: setting("pingingEnabled", "true"),
			errs: []string{`/srv/app/web.config:4: pingingEnabled="true": pingPath is required when pinging is on (the path to GET, e.g. /healthz)`}},
		// An invalid pingPath is reported once, not also as missing.
		{xml: setting("pingingEnabled", "true") + setting("pingPath", "x"),
			errs: []string{`/srv/app/web.config:5: pingPath="x": must start with "/" (the path to GET, e.g. /healthz)`}},
		{xml: setting("pingPath", "/healthz"),
			warnings: []string{`/srv/app/web.config:4: warning: pingPath="/healthz": has no effect: pingingEnabled is not "true"`}},
		{xml: setting("startMode", "AlwaysRunning") + setting("idleTimeout", "00:20:00"),
			warnings: []string{`/srv/app/web.config:5: warning: idleTimeout="00:20:00": not applied with startMode AlwaysRunning (IIS would stop the idle process and start another at once)`}},
		{xml: setting("memoryLimit", "512M") + setting("periodicRestartPrivateMemory", "524288"),
			warnings: []string{`/srv/app/web.config:5: warning: periodicRestartPrivateMemory="524288": not below memoryLimit (524288 KB): the app is killed at its limit before it is recycled`}},
		{xml: setting("memoryLimit", "512M") + setting("periodicRestartPrivateMemory", "400000")},
		{xml: setting("periodicRestartSchedule", "03:00,3:00"),
			warnings: []string{`/srv/app/web.config:4: warning: periodicRestartSchedule="03:00,3:00": 3:00 is listed more than once`}},
		{xml: setting("pingIntervall", "00:00:10") + setting("idletimeout", "0") + setting("startupMode", "x") + setting("somethingElse", "1"),
			warnings: []string{
				`/srv/app/web.config:4: warning: name="pingIntervall": unknown handler setting, ignored (did you mean pingInterval?)`,
				`/srv/app/web.config:6: warning: name="startupMode": unknown handler setting, ignored (did you mean startMode?)`,
				`/srv/app/web.config:7: warning: name="somethingElse": unknown handler setting, ignored`,
			}},
		// Several errors at once, each with its line.
		{xml: setting("idleTimeout", "20") + setting("queueLength", "0") + setting("cpuLimit", "-5"),
			errs: []string{
				`/srv/app/web.config:4: idleTimeout="20": expected [d.]hh:mm:ss, e.g. 00:02:00`,
				`/srv/app/web.config:5: queueLength="0": out of range 10-65535`,
				`/srv/app/web.config:6: cpuLimit="-5": not an unsigned integer (expected 0-100000)`,
			}},
	} {
		s, err := Parse(testFile, poolConfig(tt.xml), Options{})
		if tt.errs != nil {
			if err == nil {
				t.Errorf("%s: accepted", tt.xml)
				continue
			}
			sameLines(t, tt.xml, problemLines(t, err), tt.errs)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.xml, err)
			continue
		}
		sameLines(t, tt.xml, warningLines(s), tt.warnings)
	}
}

func TestPoolEqualAndValidate(t *testing.T) {
	base, err := Parse(testFile, poolConfig(""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Each field, changed alone, makes the spec differ (a reload recycles).
	for name, mutate := range map[string]func(*AppSpec){
		"PeriodicRestartTime":          func(s *AppSpec) { s.PeriodicRestartTime = time.Hour },
		"PeriodicRestartRequests":      func(s *AppSpec) { s.PeriodicRestartRequests = 5 },
		"PeriodicRestartPrivateMemory": func(s *AppSpec) { s.PeriodicRestartPrivateMemory = 5 },
		"PeriodicRestartSchedule":      func(s *AppSpec) { s.PeriodicRestartSchedule = []time.Duration{time.Hour} },
		"IdleTimeout":                  func(s *AppSpec) { s.IdleTimeout = time.Hour },
		"StartMode":                    func(s *AppSpec) { s.StartMode = AlwaysRunning },
		"PingingEnabled":               func(s *AppSpec) { s.PingingEnabled, s.PingPath = true, "/" },
		"PingPath":                     func(s *AppSpec) { s.PingPath = "/x" },
		"PingInterval":                 func(s *AppSpec) { s.PingInterval = time.Second },
		"PingResponseTime":             func(s *AppSpec) { s.PingResponseTime = time.Second },
		"QueueLength":                  func(s *AppSpec) { s.QueueLength = 10 },
		"UserName":                     func(s *AppSpec) { s.UserName = "u" },
		"GroupName":                    func(s *AppSpec) { s.GroupName = "g" },
		"MemoryLimit":                  func(s *AppSpec) { s.MemoryLimit = 1 << 30 },
		"CPULimit":                     func(s *AppSpec) { s.CPULimit = 50 },
	} {
		s := *base
		mutate(&s)
		if base.Equal(&s) {
			t.Errorf("a changed %s left the spec Equal", name)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
	for _, tt := range []struct {
		name   string
		mutate func(*AppSpec)
		want   string
	}{
		{"restart time", func(s *AppSpec) { s.PeriodicRestartTime = -time.Second }, `/srv/app/web.config: PeriodicRestartTime="-1s": must be whole seconds 0-31536000`},
		{"idle", func(s *AppSpec) { s.IdleTimeout = 1500 * time.Millisecond }, `/srv/app/web.config: IdleTimeout="1.5s": must be whole seconds 0-2592000`},
		{"interval", func(s *AppSpec) { s.PingInterval = 0 }, `/srv/app/web.config: PingInterval="0s": must be whole seconds 1-86400`},
		{"requests", func(s *AppSpec) { s.PeriodicRestartRequests = -1 }, `/srv/app/web.config: PeriodicRestartRequests="-1": out of range 0-4294967295`},
		{"schedule", func(s *AppSpec) { s.PeriodicRestartSchedule = []time.Duration{2 * time.Hour, time.Hour} }, `/srv/app/web.config: PeriodicRestartSchedule="1h0m0s": must be whole seconds within a day, ascending, without duplicates`},
		{"mode", func(s *AppSpec) { s.StartMode = 9 }, `/srv/app/web.config: StartMode="9": must be OnDemand or AlwaysRunning`},
		{"ping", func(s *AppSpec) { s.PingingEnabled = true }, `/srv/app/web.config: PingPath="": required when PingingEnabled`},
		{"queue", func(s *AppSpec) { s.QueueLength = 0 }, `/srv/app/web.config: QueueLength="0": out of range 10-65535`},
		{"user", func(s *AppSpec) { s.UserName = "a b" }, `/srv/app/web.config: UserName="a b": must be a name of letters, digits, "_", "." and "-" (not starting with "-", at most 32 characters) or a numeric id`},
		{"memory", func(s *AppSpec) { s.MemoryLimit = 4096 }, `/srv/app/web.config: MemoryLimit="4096": must be 0 (no limit) or 1048576-4611686018427387904 bytes`},
		{"cpu", func(s *AppSpec) { s.CPULimit = -1 }, `/srv/app/web.config: CPULimit="-1": out of range 0-100000`},
	} {
		s := *base
		tt.mutate(&s)
		sameLines(t, tt.name, problemLines(t, s.Validate()), []string{tt.want})
	}
}
