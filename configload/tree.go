package configload

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"sort"
	"strings"
)

// node is one XML element with the line of its start tag and of each of its
// attributes, so that every problem can name where it is.
type node struct {
	name     string // local name; namespace prefixes are not significant in web.config
	line     int
	attrs    []attr
	children []*node
}

type attr struct {
	name  string
	value string
	line  int
	// ns marks namespace machinery (xmlns, xmlns:x, x:name such as the
	// xdt:Transform of config transforms): never configuration.
	ns bool
}

// get returns the value of the non-namespaced attribute name.
func (n *node) get(name string) (attr, bool) {
	for _, a := range n.attrs {
		if !a.ns && a.name == name {
			return a, true
		}
	}
	return attr{}, false
}

// lineIndex maps byte offsets to 1-based line numbers.
type lineIndex []int // offsets of the first byte of each line after the first

func newLineIndex(data []byte) lineIndex {
	var idx lineIndex
	for i, c := range data {
		if c == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (l lineIndex) line(off int) int {
	return sort.Search(len(l), func(i int) bool { return l[i] > off }) + 1
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readTree decodes data into a tree of elements. Well-formedness problems
// (the parser's own, plus the ones encoding/xml lets through: duplicate
// attributes, content outside the single root element) are returned as
// problems; the tree is nil when the file cannot be read as a whole.
func readTree(data []byte) (*node, []Problem) {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return nil, []Problem{{Line: 1, Rule: "file is UTF-16; save it as UTF-8"}}
	}
	// The byte-order mark Windows editors write has no line of its own;
	// blank it rather than cut it so offsets stay file offsets.
	if bytes.HasPrefix(data, utf8BOM) {
		data = append([]byte("   "), data[len(utf8BOM):]...)
	}
	lines := newLineIndex(data)
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true

	var (
		root     *node
		stack    []*node
		problems []Problem
	)
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, append(problems, Problem{Line: se.Line, Rule: "malformed XML: " + se.Msg})
			}
			line, _ := d.InputPos()
			return nil, append(problems, Problem{Line: line, Rule: "malformed XML: " + strings.TrimPrefix(err.Error(), "xml: ")})
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name.Local, line: lines.line(start)}
			end := int(d.InputOffset())
			if start < 0 || end > len(data) || start > end {
				start, end = 0, 0 // cannot happen; keep line lookups safe
			}
			attrLines := scanAttrLines(data[start:end], start, lines)
			for i, a := range t.Attr {
				line := n.line
				if len(attrLines) == len(t.Attr) {
					line = attrLines[i]
				}
				ns := a.Name.Space != "" || a.Name.Local == "xmlns"
				for _, prev := range n.attrs {
					if !ns && !prev.ns && prev.name == a.Name.Local {
						problems = append(problems, Problem{Line: line, Attr: a.Name.Local, Value: a.Value,
							Rule: "duplicate attribute (XML allows each attribute once per element)"})
					}
				}
				n.attrs = append(n.attrs, attr{name: a.Name.Local, value: a.Value, line: line, ns: ns})
			}
			switch {
			case len(stack) > 0:
				parent := stack[len(stack)-1]
				parent.children = append(parent.children, n)
			case root == nil:
				root = n
			default:
				return nil, append(problems, Problem{Line: n.line, Attr: "<" + n.name + ">",
					Rule: "malformed XML: a second root element (the file must hold one <configuration>)"})
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 0 { // the decoder has matched it with its start
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			if len(stack) == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, append(problems, Problem{Line: lines.line(start), Rule: "malformed XML: text outside the root element"})
			}
		}
	}
	if root == nil {
		return nil, append(problems, Problem{Rule: "no XML element: the file must hold a <configuration> element"})
	}
	return root, problems
}

// scanAttrLines returns the line of each attribute name in tag, the raw
// bytes of a start tag the decoder has already accepted as well-formed
// (`<name a="v" b='w'>`). base is tag's offset in the file.
func scanAttrLines(tag []byte, base int, lines lineIndex) []int {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	i := 1 // past '<'
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	var out []int
	for i < len(tag) {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '/' || tag[i] == '>' {
			break
		}
		out = append(out, lines.line(base+i))
		for i < len(tag) && tag[i] != '=' {
			i++
		}
		for i < len(tag) && tag[i] != '"' && tag[i] != '\'' {
			i++
		}
		if i >= len(tag) {
			break
		}
		q := tag[i]
		i++
		for i < len(tag) && tag[i] != q {
			i++
		}
		i++ // past the closing quote
	}
	return out
}
