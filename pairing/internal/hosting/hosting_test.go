package hosting

import "testing"

// The rules are exercised through both middleware flavours by the table in
// package pairing; these are the cases no request can reach.

func TestPathBaseForm(t *testing.T) {
	for in, want := range map[string]string{"/": "", "": "", "//": "", "/app": "/app", "/app/": "/app", "app": "/app", "/a/b/": "/a/b"} {
		if got := PathBase(in); got != want {
			t.Errorf("APPL_PATH %q: base %q, want %q", in, got, want)
		}
	}
}

func TestLastEntryEmpty(t *testing.T) {
	for _, line := range []string{"", ",", " , ,\t"} {
		if _, _, ok := LastEntry(line); ok {
			t.Errorf("LastEntry(%q) found an entry", line)
		}
	}
}
