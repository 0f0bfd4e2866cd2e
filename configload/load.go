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
