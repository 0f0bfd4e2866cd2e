package pairing_test

import (
	"strings"
	"testing"

	"github.com/loopgate/loopgate/pairing"
)

func TestFromEnviron(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    pairing.Config
		hosted  bool
	}{
		{"all three", []string{"PATH=/bin", "ASPNETCORE_PORT=12345", "ASPNETCORE_APPL_PATH=/", "ASPNETCORE_TOKEN=t"},
			pairing.Config{Port: "12345", ApplPath: "/", Token: "t"}, true},
		{"token missing", []string{"ASPNETCORE_PORT=12345", "ASPNETCORE_APPL_PATH=/"},
			pairing.Config{Port: "12345", ApplPath: "/"}, false},
		{"token empty", []string{"ASPNETCORE_PORT=12345", "ASPNETCORE_APPL_PATH=/", "ASPNETCORE_TOKEN="},
			pairing.Config{Port: "12345", ApplPath: "/"}, false},
		{"path missing", []string{"ASPNETCORE_PORT=12345", "ASPNETCORE_TOKEN=t"},
			pairing.Config{Port: "12345", Token: "t"}, false},
		{"port missing", []string{"ASPNETCORE_APPL_PATH=/", "ASPNETCORE_TOKEN=t"},
			pairing.Config{ApplPath: "/", Token: "t"}, false},
		{"later duplicate wins, value may hold =", []string{"ASPNETCORE_PORT=1", "ASPNETCORE_PORT=2", "ASPNETCORE_APPL_PATH=/a", "ASPNETCORE_TOKEN=a=b", "garbage"},
			pairing.Config{Port: "2", ApplPath: "/a", Token: "a=b"}, true},
		{"names are case-sensitive", []string{"aspnetcore_port=1", "ASPNETCORE_APPL_PATH=/", "ASPNETCORE_TOKEN=t"},
			pairing.Config{ApplPath: "/", Token: "t"}, false},
		{"nothing", nil, pairing.Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, hosted := pairing.FromEnviron(tc.environ)
			if got != tc.want || hosted != tc.hosted || got.Hosted() != tc.hosted {
				t.Errorf("FromEnviron = %+v, %v; want %+v, %v", got, hosted, tc.want, tc.hosted)
			}
		})
	}
}

func TestListenAddr(t *testing.T) {
	t.Setenv(pairing.EnvPort, "23456")
	t.Setenv(pairing.EnvApplPath, "/app")
	t.Setenv(pairing.EnvToken, testToken)
	if got := pairing.ListenAddr("127.0.0.1:5000"); got != "127.0.0.1:23456" {
		t.Errorf("hosted: ListenAddr = %q, want 127.0.0.1:23456", got)
	}
	if c, hosted := pairing.FromEnv(); !hosted || c.Port != "23456" || c.ApplPath != "/app" || c.Token != testToken {
		t.Errorf("FromEnv = %+v, %v", c, hosted)
	}
	t.Setenv(pairing.EnvToken, "")
	if got := pairing.ListenAddr(":5000"); got != ":5000" {
		t.Errorf("not hosted: ListenAddr = %q, want the fallback :5000", got)
	}
}

func TestConfigStringHidesToken(t *testing.T) {
	s := hostedRoot.String()
	if strings.Contains(s, testToken) || !strings.Contains(s, `port="5000"`) || !strings.Contains(s, "36 bytes") {
		t.Errorf("String() = %q: want the port and the token's length, never the token", s)
	}
}
