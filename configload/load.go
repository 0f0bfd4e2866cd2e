package configload

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/internal/suggest"
)

// FileName is the file Load reads in an app's directory.
const FileName = "web.config"

// Options are the inputs to Load and Parse besides the file itself. The
// zero value is usable: mounted at "/", empty environment, no logging.
type Options struct {
	// VirtualPath is where the app is mounted, as given on the command line
	// (VPATH of VPATH=DIR). "" means "/". See CleanVirtualPath.
	VirtualPath string
	// Environ is loopgate's environment as KEY=VALUE strings (os.Environ()
	// in production): the source of %VAR% expansion and of the knobs
	// ANCM_LAUNCHER_PATH, ANCM_LAUNCHER_ARGS, ANCM_PREFER_ENVIRONMENT_VARIABLES,
	// ANCM_ADDITIONAL_ERROR_PAGE_LINK, ASPNETCORE_MODULE_DEBUG and
	// ASPNETCORE_MODULE_DEBUG_FILE. Names are matched case-insensitively, as
	// on Windows (an exact-case match first). configload never reads the
	// process environment itself.
	Environ []string
	// Logger gets a debug line for every element and attribute read and
	// ignored. The zero value logs nothing.
	Logger zerolog.Logger
}

// Load reads dir/web.config and returns the app's spec. dir is made
// absolute. A file that cannot be read gives an error naming it; a file
// with problems gives an *Error (errors.Is ErrInvalid) listing all of them.
// Load touches the filesystem only to read that one file.
func Load(dir string, opts Options) (*AppSpec, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("app directory %s: %w", dir, err)
	}
	file := filepath.Join(abs, FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read web.config: %w", err)
	}
	return Parse(file, data, opts)
}

// Parse builds the spec of the app whose web.config at configFile holds
// data; Dir is configFile's directory. It reads no file. The result is
// deterministic: equal inputs give Equal specs with equal Warnings.
func Parse(configFile string, data []byte, opts Options) (*AppSpec, error) {
	file, err := filepath.Abs(configFile)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", configFile, err)
	}
	p := &parser{file: file, dir: filepath.Dir(file), env: newEnviron(opts.Environ), log: opts.Logger}
	spec := p.run(data, opts.VirtualPath)
	// Problems are found section by section; report them in file order,
	// errors before warnings on the same line.
	sort.SliceStable(p.problems, func(i, j int) bool {
		a, b := p.problems[i], p.problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return !a.Warning && b.Warning
	})
	var warnings []Problem
	failed := false
	for _, pr := range p.problems {
		if pr.Warning {
			warnings = append(warnings, pr)
		} else {
			failed = true
		}
	}
	if failed {
		return nil, &Error{Problems: p.problems}
	}
	spec.Warnings = warnings
	return spec, nil
}

// parser holds the state of one Parse call.
type parser struct {
	file     string
	dir      string
	env      environ
	log      zerolog.Logger
	problems []Problem
}

func (p *parser) fail(line int, attr, value, rule string) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Attr: attr, Value: value, Rule: rule})
}

func (p *parser) warn(line int, attr, value, rule string) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Attr: attr, Value: value, Rule: rule, Warning: true})
}

// ignore logs something read and deliberately not used.
func (p *parser) ignore(line int, what, why string) {
	p.log.Debug().Str("file", p.file).Int("line", line).Str("ignored", what).Msg(why)
}

// warnUnknown warns about %NAME% references the environment cannot expand.
func (p *parser) warnUnknown(line int, attr, value string, unknown []string) {
	for _, name := range unknown {
		p.warn(line, attr, value, fmt.Sprintf("%%%s%% is not set in loopgate's environment; left as written", name))
	}
}

// abs resolves a path against the app directory.
func (p *parser) abs(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(p.dir, path)
}

// sections are the elements configload reads, wherever they were found.
type sections struct {
	aspNetCore    *node
	requestLimits *node
}

func (p *parser) run(data []byte, vpath string) *AppSpec {
	s := &AppSpec{
		Dir:                     p.dir,
		ConfigFile:              p.file,
		StartupTimeLimit:        120 * time.Second,
		ShutdownTimeLimit:       10 * time.Second,
		RapidFailsPerMinute:     10,
		RequestTimeout:          2 * time.Minute,
		StdoutLogFile:           filepath.Join(p.dir, "aspnetcore-stdout"),
		ProcessesPerApplication: 1,
		MaxAllowedContentLength: 30000000,
		ConsoleRedirection:      true,
		PingInterval:            30 * time.Second,
		PingResponseTime:        90 * time.Second,
		QueueLength:             1000,
	}
	clean, rule := cleanVirtualPath(vpath)
	if rule != "" {
		p.problems = append(p.problems, Problem{Attr: "virtual path", Value: vpath, Rule: rule})
	}
	s.VirtualPath = clean

	root, problems := readTree(data)
	for _, pr := range problems {
		pr.File = p.file
		p.problems = append(p.problems, pr)
	}
	if root == nil {
		return s
	}
	if root.name != "configuration" {
		p.fail(root.line, "<"+root.name+">", "", "the root element must be <configuration>")
		return s
	}
	var sec sections
	for _, c := range root.children {
		switch c.name {
		case "system.webServer":
			p.webServer(c, &sec)
		case "location":
			path, _ := c.get("path")
			if path.value != "." && path.value != "" {
				p.ignore(c.line, "<location path=\""+path.value+"\">", "applies to another path than the app's own")
				continue
			}
			for _, cc := range c.children {
				if cc.name == "system.webServer" {
					p.webServer(cc, &sec)
				} else {
					p.ignore(cc.line, "<"+cc.name+">", "not read by loopgate")
				}
			}
		default:
			p.ignore(c.line, "<"+c.name+">", "not read by loopgate")
		}
	}
	if sec.aspNetCore == nil {
		p.fail(0, "", "", `no <aspNetCore> section in configuration/system.webServer or configuration/location[@path="."]/system.webServer`)
	} else {
		p.aspNetCore(s, sec.aspNetCore)
	}
	if sec.requestLimits != nil {
		p.requestLimits(s, sec.requestLimits)
	}
	return s
}

// single records the one allowed occurrence of a section or element and
// reports any other.
func (p *parser) single(slot **node, n *node) {
	if *slot != nil {
		p.fail(n.line, "<"+n.name+">", "", fmt.Sprintf("duplicate element (the first is at line %d)", (*slot).line))
		return
	}
	*slot = n
}

func (p *parser) webServer(n *node, sec *sections) {
	for _, c := range n.children {
		switch c.name {
		case "aspNetCore":
			p.single(&sec.aspNetCore, c)
		case "security":
			for _, rf := range c.children {
				if rf.name != "requestFiltering" {
					p.ignore(rf.line, "<"+rf.name+">", "not read by loopgate")
					continue
				}
				for _, rl := range rf.children {
					if rl.name == "requestLimits" {
						p.single(&sec.requestLimits, rl)
					} else {
						p.ignore(rl.line, "<"+rl.name+">", "IIS request filtering that loopgate does not do")
					}
				}
			}
		default:
			// handlers, modules, rewrite, ...: IIS's business.
			p.ignore(c.line, "<"+c.name+">", "not read by loopgate")
		}
	}
}

// iisGenericAttrs are attributes IIS accepts on every section for
// configuration locking; they mean nothing to loopgate.
var iisGenericAttrs = []string{"lockAttributes", "lockAllAttributesExcept", "lockElements", "lockAllElementsExcept", "lockItem"}

// aspNetCoreAttrs are the attributes of the aspNetCore section (spec §5.1).
var aspNetCoreAttrs = []string{"processPath", "arguments", "startupTimeLimit", "shutdownTimeLimit",
	"rapidFailsPerMinute", "requestTimeout", "stdoutLogEnabled", "stdoutLogFile", "processesPerApplication",
	"forwardWindowsAuthToken", "disableStartUpErrorPage", "hostingModel"}

// genericAttr handles the attributes every element may carry, reporting
// whether a was one of them.
func (p *parser) genericAttr(a attr) bool {
	switch {
	case a.ns:
		p.ignore(a.line, a.name, "namespace declaration or prefixed attribute")
	case slices.Contains(iisGenericAttrs, a.name):
		p.ignore(a.line, a.name, "IIS configuration locking")
	case a.name == "configSource":
		p.fail(a.line, a.name, a.value, "not supported: loopgate reads sections only from web.config itself")
	default:
		return false
	}
	return true
}

// unknownAttr warns about an attribute no schema defines, which IIS would
// refuse: usually a typo.
func (p *parser) unknownAttr(a attr, known []string) {
	rule := "unknown attribute, ignored"
	// Only a case slip gets a hint here (the nearest name is then at
	// distance 0); a typo of an attribute is left to the schema's list.
	if k := suggest.Closest(a.name, known); k != "" && strings.EqualFold(k, a.name) {
		rule += " (attribute names are case-sensitive: did you mean " + k + "?)"
	}
	p.warn(a.line, a.name, a.value, rule)
}

func (p *parser) aspNetCore(s *AppSpec, n *node) {
	var processPath, arguments, stdoutLogFile *attr
	for i := range n.attrs {
		a := &n.attrs[i]
		switch a.name {
		case "processPath":
			processPath = a
		case "arguments":
			arguments = a
		case "startupTimeLimit":
			s.StartupTimeLimit = p.seconds(*a, 3600, s.StartupTimeLimit)
		case "shutdownTimeLimit":
			s.ShutdownTimeLimit = p.seconds(*a, 600, s.ShutdownTimeLimit)
		case "rapidFailsPerMinute":
			s.RapidFailsPerMinute = p.uint(*a, 0, 100, s.RapidFailsPerMinute)
		case "processesPerApplication":
			s.ProcessesPerApplication = p.uint(*a, 1, 100, s.ProcessesPerApplication)
		case "requestTimeout":
			if d, rule := parseTimeSpan(a.value); rule != "" {
				p.fail(a.line, a.name, a.value, rule)
			} else {
				s.RequestTimeout = d
			}
		case "stdoutLogEnabled":
			s.StdoutLogEnabled = p.bool(*a, s.StdoutLogEnabled)
		case "stdoutLogFile":
			stdoutLogFile = a
		case "disableStartUpErrorPage":
			s.DisableStartUpErrorPage = p.bool(*a, s.DisableStartUpErrorPage)
		case "forwardWindowsAuthToken":
			p.bool(*a, true)
			p.ignore(a.line, a.name, "Windows authentication only")
		case "hostingModel":
			switch {
			case a.value == "" || strings.EqualFold(a.value, "outofprocess"):
				s.HostingModel = OutOfProcess
			case strings.EqualFold(a.value, "inprocess"):
				s.HostingModel = InProcess
				p.warn(a.line, a.name, a.value, "loopgate has no in-process hosting; the app runs out of process")
			default:
				p.fail(a.line, a.name, a.value, `must be inprocess or outofprocess (the reference refuses it: "Unknown hosting model")`)
			}
		default:
			if !p.genericAttr(*a) {
				p.unknownAttr(*a, aspNetCoreAttrs)
			}
		}
	}

	var envs, settings, recycle *node
	for _, c := range n.children {
		switch c.name {
		case "environmentVariables":
			p.single(&envs, c)
		case "handlerSettings":
			p.single(&settings, c)
		case "recycleOnFileChange":
			p.single(&recycle, c)
			p.ignore(c.line, "<recycleOnFileChange>", "not supported out of process; loopgate recycles on web.config changes only")
		default:
			p.warn(c.line, "<"+c.name+">", "", "unknown element in <aspNetCore>, ignored (expected environmentVariables, handlerSettings, recycleOnFileChange)")
		}
	}
	if settings != nil {
		s.HandlerSettings = p.collection(settings, "handlerSetting")
	}

	p.processPath(s, n, processPath)
	p.arguments(s, arguments)
	if a := stdoutLogFile; a != nil {
		if strings.TrimSpace(a.value) == "" {
			p.fail(a.line, a.name, a.value, `must not be empty (leave it out for the default .\aspnetcore-stdout)`)
		} else {
			v, unknown := expand(windowsPath(a.value), p.env, false)
			p.warnUnknown(a.line, a.name, a.value, unknown)
			if isDrivePath(v) {
				p.warn(a.line, a.name, a.value, "a Windows drive path cannot exist on Linux; it is taken as relative to the app directory")
			}
			s.StdoutLogFile = p.abs(v)
		}
	}
	if envs != nil {
		p.environment(s, envs)
	}
	p.handlerSettings(s, settings)
	if s.AdditionalErrorPageLink, _ = p.env.nonEmpty("ANCM_ADDITIONAL_ERROR_PAGE_LINK"); s.AdditionalErrorPageLink != "" {
		p.log.Debug().Str("file", p.file).Str("link", s.AdditionalErrorPageLink).Msg("ANCM_ADDITIONAL_ERROR_PAGE_LINK set")
	}
}

func (p *parser) seconds(a attr, hi uint64, def time.Duration) time.Duration {
	n, rule := parseUint(a.value, 0, hi)
	if rule != "" {
		p.fail(a.line, a.name, a.value, rule)
		return def
	}
	return time.Duration(n) * time.Second
}

func (p *parser) uint(a attr, lo, hi uint64, def int) int {
	n, rule := parseUint(a.value, lo, hi)
	if rule != "" {
		p.fail(a.line, a.name, a.value, rule)
		return def
	}
	return int(n)
}

func (p *parser) bool(a attr, def bool) bool {
	b, rule := parseBool(a.value)
	if rule != "" {
		p.fail(a.line, a.name, a.value, rule)
		return def
	}
	return b
}

func (p *parser) processPath(s *AppSpec, n *node, a *attr) {
	if v, ok := p.env.nonEmpty("ANCM_LAUNCHER_PATH"); ok {
		p.log.Debug().Str("file", p.file).Str("processPath", v).Msg("ANCM_LAUNCHER_PATH overrides processPath")
		s.ProcessPath = v
		s.ProcessPathSource = Problem{Attr: "ANCM_LAUNCHER_PATH", Value: v}
	} else {
		line, raw := n.line, ""
		if a != nil {
			line, raw = a.line, a.value
		}
		s.ProcessPathSource = Problem{File: p.file, Line: line, Attr: "processPath", Value: raw}
		if strings.TrimSpace(raw) == "" {
			p.fail(line, "processPath", raw, "required")
			return
		}
		v, unknown := expand(windowsPath(raw), p.env, false)
		p.warnUnknown(line, "processPath", raw, unknown)
		if strings.TrimSpace(v) == "" {
			p.fail(line, "processPath", raw, "empty after %VAR% expansion")
			return
		}
		if isDrivePath(v) {
			p.warn(line, "processPath", raw, "a Windows drive path cannot exist on Linux; the app will fail to start")
		}
		s.ProcessPath = v
	}
	if base := filepath.Base(s.ProcessPath); !filepath.IsAbs(s.ProcessPath) && len(base) > len(".exe") &&
		strings.EqualFold(base[len(base)-len(".exe"):], ".exe") {
		s.ProcessPathFallback = s.ProcessPath[:len(s.ProcessPath)-len(".exe")]
	}
}

func (p *parser) arguments(s *AppSpec, a *attr) {
	if v, ok := p.env.nonEmpty("ANCM_LAUNCHER_ARGS"); ok {
		p.log.Debug().Str("file", p.file).Str("arguments", v).Msg("ANCM_LAUNCHER_ARGS overrides arguments")
		s.Arguments, _ = splitCommandLine(v)
		return
	}
	if a == nil {
		return
	}
	v, unknown := expand(a.value, p.env, true)
	p.warnUnknown(a.line, a.name, a.value, unknown)
	args, unterminated := splitCommandLine(v)
	if unterminated {
		p.warn(a.line, a.name, a.value, "unterminated double quote; the rest of the line is one argument")
	}
	for i := range args {
		args[i] = windowsArg(args[i])
	}
	s.Arguments = args
}

// entry is one element of an environmentVariables or handlerSettings
// collection, with its lines.
type entry struct {
	name, value         string
	nameLine, valueLine int
}

// collection reads <environmentVariables> or <handlerSettings>: the add
// element (item), <clear/>, nothing else.
func (p *parser) collection(n *node, item string) []Setting {
	var out []Setting
	for _, e := range p.entries(n, item) {
		out = append(out, Setting{Name: e.name, Value: e.value})
	}
	return out
}

func (p *parser) entries(n *node, item string) []entry {
	var out []entry
	for _, a := range n.attrs {
		if !p.genericAttr(a) {
			p.unknownAttr(a, nil)
		}
	}
	for _, c := range n.children {
		switch c.name {
		case item:
			e := entry{nameLine: c.line, valueLine: c.line}
			var hasName, hasValue bool
			for _, a := range c.attrs {
				switch a.name {
				case "name":
					e.name, e.nameLine, hasName = a.value, a.line, true
				case "value":
					e.value, e.valueLine, hasValue = a.value, a.line, true
				default:
					if !p.genericAttr(a) {
						p.unknownAttr(a, []string{"name", "value"})
					}
				}
			}
			switch {
			case !hasName || e.name == "":
				p.fail(e.nameLine, "name", e.name, "required on <"+item+"> and must not be empty")
			case !hasValue:
				p.fail(c.line, "<"+item+" name=\""+e.name+"\">", "", "value is required (use value=\"\" for an empty one)")
			default:
				out = append(out, e)
			}
		case "clear":
			if len(out) > 0 {
				p.warn(c.line, "<clear>", "", fmt.Sprintf("drops the %d entries above it", len(out)))
			}
			out = nil
		default:
			p.fail(c.line, "<"+c.name+">", "", fmt.Sprintf(`not allowed in <%s>; use <%s name="..." value="..."/> (the reference fails to load the aspNetCore section)`, n.name, item))
		}
	}
	return out
}

// alwaysSet are the variables the supervisor sets on every start,
// overwriting any value from web.config (spec §1.1).
var alwaysSet = []string{"ASPNETCORE_APPL_PATH", "ASPNETCORE_IIS_HTTPAUTH", "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED", "ASPNETCORE_IIS_PHYSICAL_PATH"}

func (p *parser) environment(s *AppSpec, n *node) {
	var list []entry
	for _, e := range p.entries(n, "environmentVariable") {
		if strings.ContainsRune(e.name, '=') {
			p.fail(e.nameLine, "name", e.name, `must not contain "=" (Linux cannot pass such a variable)`)
			continue
		}
		if i := slices.IndexFunc(list, func(x entry) bool { return strings.EqualFold(x.name, e.name) }); i >= 0 {
			p.warn(e.nameLine, "name", e.name, fmt.Sprintf("duplicate of line %d (names are case-insensitive); this later value wins", list[i].nameLine))
			list[i].value, list[i].valueLine = e.value, e.valueLine
			continue
		}
		list = append(list, e)
	}
	prefer := false
	if v, ok := p.env.lookup("ANCM_PREFER_ENVIRONMENT_VARIABLES"); ok && (v == "1" || strings.EqualFold(v, "true")) {
		prefer = true
	}
	for _, e := range list {
		value := e.value
		if v, ok := p.env.lookup(e.name); ok && prefer {
			p.log.Debug().Str("file", p.file).Int("line", e.valueLine).Str("name", e.name).
				Msg("ANCM_PREFER_ENVIRONMENT_VARIABLES: loopgate's environment overrides web.config")
			value = v
		} else {
			var unknown []string
			value, unknown = expand(value, p.env, true)
			p.warnUnknown(e.valueLine, e.name, e.value, unknown)
		}
		switch {
		case strings.EqualFold(e.name, portVar):
			if value == "" {
				p.ignore(e.valueLine, portVar, "empty: a port is chosen for each start")
				continue
			}
			if _, rule := parseUint(value, 1025, 48000); rule != "" || strings.TrimSpace(value) != value {
				rule = "must be an integer 1025-48000 (the reference answers every request with 502.5)"
				if value != e.value {
					rule = fmt.Sprintf("is %s after expansion; %s", quoteValue(value), rule)
				}
				p.fail(e.valueLine, e.name, e.value, rule)
			} else if s.ProcessesPerApplication > 1 {
				p.warn(e.valueLine, e.name, value, fmt.Sprintf("every one of the %d processes (processesPerApplication) gets this port; all but one will fail to listen", s.ProcessesPerApplication))
			}
		case slices.ContainsFunc(alwaysSet, func(x string) bool { return strings.EqualFold(x, e.name) }):
			p.warn(e.nameLine, "name", e.name, "set by loopgate on every start; this value is overwritten")
		}
		s.Environment = append(s.Environment, EnvVar{Name: e.name, Value: value})
	}
}

// handlerSettingsKnown are the handler settings the reference reads, and
// loopgate's app pool settings (poolSettingNames, added by init); the ones
// loopgate has no use for are listed with the reason.
var handlerSettingsKnown = map[string]string{
	"debugfile":                            "",
	"debuglevel":                           "",
	"enableoutofprocessconsoleredirection": "",
	"forwardresponseconnectionheader":      "",
	"forwardedforformat":                   "",
	"stdoutlogmaxbytes":                    "",
	"stdoutlogmaxfiles":                    "",
	"backendprotocol":                      "",
	"disallowrotationonconfigchange":       "",
	"handlerversion":                       "selects an IIS handler DLL",
	"experimentalenableshadowcopy":         "IIS shadow copying",
	"enableshadowcopy":                     "IIS shadow copying",
	"shadowcopydirectory":                  "IIS shadow copying",
	"cleanshadowcopydirectory":             "IIS shadow copying",
	"stacksize":                            "in-process hosting only",
}

// handlerSettingNames are the handler settings loopgate reads, spelled as
// documented, for "did you mean" hints.
var handlerSettingNames = append([]string{"debugFile", "debugLevel", "enableOutOfProcessConsoleRedirection",
	"forwardResponseConnectionHeader", "forwardedForFormat", "backendProtocol", "disallowRotationOnConfigChange"}, poolSettingNames...)

func init() {
	for _, n := range poolSettingNames {
		handlerSettingsKnown[strings.ToLower(n)] = ""
	}
}

// debugWords are the debugLevel items the reference recognises by prefix.
var debugWords = []string{"error", "warning", "info", "trace", "console", "file", "eventlog"}

func (p *parser) handlerSettings(s *AppSpec, n *node) {
	// Lines of the first occurrence of each setting, for problems.
	lines := map[string]int{}
	if n != nil {
		for _, c := range n.children {
			if c.name != "handlerSetting" {
				continue
			}
			name, _ := c.get("name")
			key := strings.ToLower(name.value)
			if first, seen := lines[key]; seen && name.value != "" {
				p.warn(name.line, "name", name.value, fmt.Sprintf("duplicate of line %d (names are case-insensitive); the first wins, this one is ignored", first))
			} else if name.value != "" {
				lines[key] = c.line
				if why, known := handlerSettingsKnown[key]; !known {
					rule := "unknown handler setting, ignored"
					if k := suggest.Closest(name.value, handlerSettingNames); k != "" {
						rule += " (did you mean " + k + "?)"
					}
					p.warn(c.line, "name", name.value, rule)
				} else if why != "" {
					p.ignore(c.line, name.value, why)
				}
			}
		}
	}
	flag := func(name string, def bool) bool {
		v, ok := s.HandlerSetting(name)
		if !ok {
			return def
		}
		b, rule := parseBool(v)
		if rule != "" {
			p.warn(lines[strings.ToLower(name)], name, v, fmt.Sprintf("not true or false; taken as %t as the reference does", def))
			return def
		}
		return b
	}
	s.ForwardResponseConnectionHeader = flag("forwardResponseConnectionHeader", false)
	s.ConsoleRedirection = flag("enableOutOfProcessConsoleRedirection", true)
	s.DisallowRotationOnConfigChange = flag("disallowRotationOnConfigChange", false)
	if v, ok := s.HandlerSetting("forwardedForFormat"); ok {
		switch {
		case strings.EqualFold(v, "ipPort"):
			s.ForwardedForFormat = ForwardedForIPPort
		case strings.EqualFold(v, "ip"):
			s.ForwardedForFormat = ForwardedForIP
		default:
			p.fail(lines["forwardedforformat"], "forwardedForFormat", v, "must be ipPort (the reference's 203.0.113.7:51234) or ip (203.0.113.7)")
		}
	}
	if v, ok := s.HandlerSetting("backendProtocol"); ok {
		switch {
		case strings.EqualFold(v, "http1"):
			s.BackendProtocol = BackendHTTP1
		case strings.EqualFold(v, "h2c"):
			s.BackendProtocol = BackendH2C
		default:
			p.fail(lines["backendprotocol"], "backendProtocol", v, "must be http1 (HTTP/1.1, the default) or h2c (HTTP/2 without TLS, for gRPC)")
		}
	}
	p.poolSettings(s, func(name string) int { return lines[strings.ToLower(name)] })
	if v, ok := s.HandlerSetting("stdoutLogMaxBytes"); ok {
		if n, rule := parseUint(v, 0, 1<<40); rule != "" {
			p.fail(lines["stdoutlogmaxbytes"], "stdoutLogMaxBytes", v, rule+" bytes; 0: no limit")
		} else if n > 0 && n < 4096 {
			p.fail(lines["stdoutlogmaxbytes"], "stdoutLogMaxBytes", v, "below 4096 bytes (0: no limit)")
		} else {
			s.StdoutLogMaxBytes = int64(n)
		}
	}
	if v, ok := s.HandlerSetting("stdoutLogMaxFiles"); ok {
		if n, rule := parseUint(v, 0, 100000); rule != "" {
			p.fail(lines["stdoutlogmaxfiles"], "stdoutLogMaxFiles", v, rule+"; 0: keep every file")
		} else {
			s.StdoutLogMaxFiles = int(n)
		}
	}
	if (s.StdoutLogMaxBytes > 0 || s.StdoutLogMaxFiles > 0) && !s.StdoutLogEnabled {
		line := lines["stdoutlogmaxbytes"]
		if line == 0 {
			line = lines["stdoutlogmaxfiles"]
		}
		p.warn(line, "<handlerSetting>", "", "stdoutLogMaxBytes and stdoutLogMaxFiles apply only with stdoutLogEnabled=\"true\"")
	}
	if !s.ConsoleRedirection && s.StdoutLogEnabled {
		p.warn(lines["enableoutofprocessconsoleredirection"], "enableOutOfProcessConsoleRedirection", "false",
			"stdoutLogEnabled has no effect: the app's output is discarded")
	}

	if v, ok := s.HandlerSetting("debugLevel"); ok && v != "" {
		s.DebugLevel = v
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item != "" && !slices.ContainsFunc(debugWords, func(w string) bool {
				return len(item) >= len(w) && strings.EqualFold(item[:len(w)], w)
			}) {
				p.warn(lines["debuglevel"], "debugLevel", v, fmt.Sprintf("unknown item %q, ignored (known: %s)", item, strings.Join(debugWords, ", ")))
			}
		}
	} else if v, ok := p.env.nonEmpty("ASPNETCORE_MODULE_DEBUG"); ok {
		s.DebugLevel = v
	}
	if v, ok := s.HandlerSetting("debugFile"); ok && v != "" {
		s.DebugFile = p.abs(windowsPath(v))
	} else if v, ok := p.env.nonEmpty("ASPNETCORE_MODULE_DEBUG_FILE"); ok {
		s.DebugFile = p.abs(windowsPath(v))
	} else if debugToFile(s.DebugLevel) {
		s.DebugFile = filepath.Join(p.dir, "aspnetcore-debug.log")
	}
}

// debugToFile reports whether a debugLevel list names the file location.
func debugToFile(level string) bool {
	for _, item := range strings.Split(level, ",") {
		item = strings.TrimSpace(item)
		if len(item) >= len("file") && strings.EqualFold(item[:len("file")], "file") {
			return true
		}
	}
	return false
}

func (p *parser) requestLimits(s *AppSpec, n *node) {
	for _, a := range n.attrs {
		switch {
		case a.name == "maxAllowedContentLength":
			if v, rule := parseUint(a.value, 0, 4294967295); rule != "" {
				p.fail(a.line, a.name, a.value, rule)
			} else {
				s.MaxAllowedContentLength = int64(v)
			}
		case p.genericAttr(a):
		default:
			p.ignore(a.line, a.name, "IIS request filtering that loopgate does not do")
		}
	}
	for _, c := range n.children {
		p.ignore(c.line, "<"+c.name+">", "IIS request filtering that loopgate does not do")
	}
}
