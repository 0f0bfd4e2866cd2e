package loopgatetest

import (
	"testing"

	"github.com/loopgate/loopgate/internal/selfsigned"
)

// WriteCert writes a self-signed server certificate for 127.0.0.1 with
// the given serial number and its key, as PEM files for --tls-cert and
// --tls-key (internal/selfsigned), failing t if it cannot.
func WriteCert(t testing.TB, certFile, keyFile string, serial int64) {
	t.Helper()
	if err := selfsigned.Write(certFile, keyFile, serial); err != nil {
		t.Fatal(err)
	}
}
