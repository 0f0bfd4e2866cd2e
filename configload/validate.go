package configload

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// HandlerSetting returns the value of the handler setting name, matched
// case-insensitively; the first one wins, as in the reference.
func (s *AppSpec) HandlerSetting(name string) (string, bool) {
	for _, st := range s.HandlerSettings {
		if strings.EqualFold(st.Name, name) {
			return st.Value, true
		}
	}
	return "", false
}

// Equal reports whether s and o run the app the same way: every field but
// Warnings, whose line numbers move when a comment is added. A reload
// recycles an app only when its old and new specs are not Equal.
func (s *AppSpec) Equal(o *AppSpec) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Dir == o.Dir &&
		s.ConfigFile == o.ConfigFile &&
		s.VirtualPath == o.VirtualPath &&
		s.ProcessPath == o.ProcessPath &&
		s.ProcessPathFallback == o.ProcessPathFallback &&
		slices.Equal(s.Arguments, o.Arguments) &&
		slices.Equal(s.Environment, o.Environment) &&
		s.StartupTimeLimit == o.StartupTimeLimit &&
		s.ShutdownTimeLimit == o.ShutdownTimeLimit &&
		s.RapidFailsPerMinute == o.RapidFailsPerMinute &&
		s.RequestTimeout == o.RequestTimeout &&
		s.StdoutLogEnabled == o.StdoutLogEnabled &&
		s.StdoutLogFile == o.StdoutLogFile &&
		s.StdoutLogMaxBytes == o.StdoutLogMaxBytes &&
		s.StdoutLogMaxFiles == o.StdoutLogMaxFiles &&
		s.ProcessesPerApplication == o.ProcessesPerApplication &&
		s.DisableStartUpErrorPage == o.DisableStartUpErrorPage &&
		s.HostingModel == o.HostingModel &&
		s.MaxAllowedContentLength == o.MaxAllowedContentLength &&
		slices.Equal(s.HandlerSettings, o.HandlerSettings) &&
		s.ForwardResponseConnectionHeader == o.ForwardResponseConnectionHeader &&
		s.ForwardedForFormat == o.ForwardedForFormat &&
		s.BackendProtocol == o.BackendProtocol &&
		s.ConsoleRedirection == o.ConsoleRedirection &&
		s.DisallowRotationOnConfigChange == o.DisallowRotationOnConfigChange &&
		s.DebugFile == o.DebugFile &&
		s.DebugLevel == o.DebugLevel &&
		s.AdditionalErrorPageLink == o.AdditionalErrorPageLink &&
		s.PeriodicRestartTime == o.PeriodicRestartTime &&
		s.PeriodicRestartRequests == o.PeriodicRestartRequests &&
		s.PeriodicRestartPrivateMemory == o.PeriodicRestartPrivateMemory &&
		slices.Equal(s.PeriodicRestartSchedule, o.PeriodicRestartSchedule) &&
		s.IdleTimeout == o.IdleTimeout &&
		s.StartMode == o.StartMode &&
		s.PingingEnabled == o.PingingEnabled &&
		s.PingPath == o.PingPath &&
		s.PingInterval == o.PingInterval &&
		s.PingResponseTime == o.PingResponseTime &&
		s.QueueLength == o.QueueLength &&
		s.UserName == o.UserName &&
		s.GroupName == o.GroupName &&
		s.MemoryLimit == o.MemoryLimit &&
		s.CPULimit == o.CPULimit
}

// Validate re-checks the invariants of a built spec: the ranges and
// required fields Parse enforces. A spec from Load or Parse always passes;
// a spec built or changed by hand may not. The error is an *Error whose
// problems name the field.
func (s *AppSpec) Validate() error {
	var probs []Problem
	bad := func(field, value, rule string) {
		probs = append(probs, Problem{File: s.ConfigFile, Attr: field, Value: value, Rule: rule})
	}
	absClean := func(field, p string) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			bad(field, p, "must be an absolute, cleaned path")
		}
	}
	seconds := func(field string, d, hi time.Duration) {
		if d < 0 || d > hi || d%time.Second != 0 {
			bad(field, d.String(), fmt.Sprintf("must be whole seconds 0-%d", hi/time.Second))
		}
	}
	intRange := func(field string, n, lo, hi int) {
		if n < lo || n > hi {
			bad(field, fmt.Sprint(n), fmt.Sprintf("out of range %d-%d", lo, hi))
		}
	}

	absClean("Dir", s.Dir)
	if filepath.Dir(s.ConfigFile) != s.Dir {
		bad("ConfigFile", s.ConfigFile, "must be a file in Dir")
	}
	if clean, rule := cleanVirtualPath(s.VirtualPath); rule != "" || clean != s.VirtualPath {
		bad("VirtualPath", s.VirtualPath, "must be a clean virtual path (see CleanVirtualPath)")
	}
	if strings.TrimSpace(s.ProcessPath) == "" {
		bad("ProcessPath", s.ProcessPath, "required")
	}
	if s.ProcessPathFallback != "" && (filepath.IsAbs(s.ProcessPath) || !strings.EqualFold(s.ProcessPathFallback+".exe", s.ProcessPath) ||
		s.ProcessPath[:len(s.ProcessPathFallback)] != s.ProcessPathFallback) {
		bad("ProcessPathFallback", s.ProcessPathFallback, "must be the relative ProcessPath without its .exe")
	}
	seconds("StartupTimeLimit", s.StartupTimeLimit, 3600*time.Second)
	seconds("ShutdownTimeLimit", s.ShutdownTimeLimit, 600*time.Second)
	seconds("RequestTimeout", s.RequestTimeout, maxRequestTimeout)
	intRange("RapidFailsPerMinute", s.RapidFailsPerMinute, 0, 100)
	intRange("ProcessesPerApplication", s.ProcessesPerApplication, 1, 100)
	absClean("StdoutLogFile", s.StdoutLogFile)
	if s.HostingModel != OutOfProcess && s.HostingModel != InProcess {
		bad("HostingModel", fmt.Sprint(uint8(s.HostingModel)), "must be OutOfProcess or InProcess")
	}
	if s.BackendProtocol > BackendH2C {
		bad("BackendProtocol", fmt.Sprint(uint8(s.BackendProtocol)), "must be BackendHTTP1 or BackendH2C")
	}
	if s.ForwardedForFormat > ForwardedForIP {
		bad("ForwardedForFormat", fmt.Sprint(uint8(s.ForwardedForFormat)), "must be ForwardedForIPPort or ForwardedForIP")
	}
	if s.MaxAllowedContentLength < 0 || s.MaxAllowedContentLength > 4294967295 {
		bad("MaxAllowedContentLength", fmt.Sprint(s.MaxAllowedContentLength), "out of range 0-4294967295")
	}
	for i, e := range s.Environment {
		switch {
		case e.Name == "" || strings.ContainsRune(e.Name, '='):
			bad("Environment", e.Name, `name must be non-empty without "="`)
		case slices.ContainsFunc(s.Environment[:i], func(x EnvVar) bool { return strings.EqualFold(x.Name, e.Name) }):
			bad("Environment", e.Name, "duplicate name (names are case-insensitive)")
		case strings.EqualFold(e.Name, portVar):
			if _, rule := parseUint(e.Value, 1025, 48000); rule != "" || strings.TrimSpace(e.Value) != e.Value {
				bad("Environment", e.Name+"="+e.Value, "ASPNETCORE_PORT must be an integer 1025-48000")
			}
		}
	}
	for _, st := range s.HandlerSettings {
		if st.Name == "" {
			bad("HandlerSettings", st.Value, "name must not be empty")
		}
	}
	if s.DebugFile != "" {
		absClean("DebugFile", s.DebugFile)
	}
	s.validatePool(bad, seconds)
	if len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}
