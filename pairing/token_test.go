package pairing

import (
	"regexp"
	"testing"
)

var tokenForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewTokenForm(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok := NewToken()
		if !tokenForm.MatchString(tok) {
			t.Fatalf("token %q is not a 36-char lowercase v4 UUID", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
}
