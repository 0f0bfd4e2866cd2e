package configload

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loopgate/loopgate/internal/suggest"
)

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
