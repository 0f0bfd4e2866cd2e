package main

import (
	"flag"
	"strings"

	"github.com/loopgate/loopgate/internal/suggest"
)

// flagError rewords a flag package error for people: an undefined flag
// becomes `unknown flag --lisen: did you mean --listen?` when a defined flag
// is close (an edit or two, a swap, or only case apart); other errors pass
// as they are.
func flagError(fs *flag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err.Error()
	}
	msg := "unknown flag --" + name
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if s := suggest.Closest(name, names); s != "" {
		msg += ": did you mean --" + s + "?"
	}
	return msg
}
