package pairing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/fastpairing"
)

func testCertificate(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "client.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestClientCertificate: both flavours decode MS-ASPNETCORE-CLIENTCERT
// lazily, only for requests that passed the token check.
func TestClientCertificate(t *testing.T) {
	good := testCertificate(t)
	for _, tc := range []struct {
		name   string
		cfg    pairing.Config
		header string // "" sends none
		wantCN string // "" wants nil
		warn   bool
	}{
		{"valid", hostedRoot, good, "client.example", false},
		{"valid, mounted app", pairing.Config{Port: "1", ApplPath: "/app", Token: testToken}, good, "client.example", false},
		{"none", hostedRoot, "", "", false},
		{"not base64", hostedRoot, "Enabled;0123abc", "", true},
		{"base64 of garbage", hostedRoot, base64.StdEncoding.EncodeToString([]byte("not a certificate")), "", true},
		{"not hosted: header not trusted", pairing.Config{}, good, "", false},
	} {
		for _, fast := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/net-http", true: "/fasthttp"}[fast], func(t *testing.T) {
				var logBuf syncBuffer
				opts := pairing.Options{Log: zerolog.New(&logBuf)}
				var cert *x509.Certificate
				var calls int
				if fast {
					h := fastpairing.Middleware(tc.cfg, opts)(func(ctx *fasthttp.RequestCtx) {
						cert = fastpairing.ClientCertificate(ctx)
						if again := fastpairing.ClientCertificate(ctx); again != cert {
							t.Error("second call decoded again")
						}
						calls++
					})
					raw := "GET /app/x HTTP/1.1\r\nHost: a\r\nMS-ASPNETCORE-TOKEN: " + testToken + "\r\n"
					if tc.header != "" {
						raw += "MS-ASPNETCORE-CLIENTCERT: " + tc.header + "\r\n"
					}
					serveFastOnce(t, h, netip.MustParseAddrPort(defaultPeer), raw+"\r\n", false)
				} else {
					h := tc.cfg.Middleware(opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						cert = pairing.ClientCertificate(r)
						if again := pairing.ClientCertificate(r); again != cert {
							t.Error("second call decoded again")
						}
						calls++
					}))
					r := httptest.NewRequest("GET", "/app/x", nil)
					r.Header.Set("MS-ASPNETCORE-TOKEN", testToken)
					if tc.header != "" {
						r.Header.Set("MS-ASPNETCORE-CLIENTCERT", tc.header)
					}
					h.ServeHTTP(httptest.NewRecorder(), r)
				}
				if calls != 1 {
					t.Fatalf("app ran %d times", calls)
				}
				gotCN := ""
				if cert != nil {
					gotCN = cert.Subject.CommonName
				}
				if gotCN != tc.wantCN {
					t.Errorf("certificate CN %q, want %q", gotCN, tc.wantCN)
				}
				logged := logBuf.String()
				if warned := strings.Contains(logged, "failed to read the client certificate"); warned != tc.warn {
					t.Errorf("warning logged %v, want %v; log:\n%s", warned, tc.warn, logged)
				}
				if strings.Count(logged, "failed to read") > 1 {
					t.Errorf("warning logged more than once:\n%s", logged)
				}
			})
		}
	}
	// Outside the middleware the accessors have nothing to say.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("MS-ASPNETCORE-CLIENTCERT", good)
	if pairing.ClientCertificate(r) != nil || pairing.PathBase(r) != "" {
		t.Error("accessors report values for a request the middleware never saw")
	}
}
