// The two elements loopgate reads of system.webServer: <aspNetCore> (its
// attributes, processPath and arguments, and the seconds, number and
// boolean rules of their values) and <requestLimits>
// (maxAllowedContentLength).

package configload

import (
	"path/filepath"
	"strings"
	"time"
)

// aspNetCoreAttrs are the attributes of the aspNetCore section (spec §5.1).
var aspNetCoreAttrs = []string{"processPath", "arguments", "startupTimeLimit", "shutdownTimeLimit",
	"rapidFailsPerMinute", "requestTimeout", "stdoutLogEnabled", "stdoutLogFile", "processesPerApplication",
	"forwardWindowsAuthToken", "disableStartUpErrorPage", "hostingModel"}

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
