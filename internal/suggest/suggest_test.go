package suggest

import "testing"

func TestClosest(t *testing.T) {
	flags := []string{"listen", "tls-listen", "tls-cert", "tls-key", "accel", "admin", "admin-host", "h2", "drain-timeout"}
	for name, want := range map[string]string{"lisen": "listen", "listne": "listen", "tls-cret": "tls-cert", "acel": "accel", "h3": "h2", "x": "", "drain": "", "admin-hots": "admin-host", "LISTEN": "listen"} {
		if got := Closest(name, flags); got != want {
			t.Errorf("Closest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"abc", "acb", 1}, {"abc", "ab", 1}, {"ab", "abc", 1}, {"abc", "abd", 1}, {"", "abc", 3}, {"ca", "abc", 3}} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
