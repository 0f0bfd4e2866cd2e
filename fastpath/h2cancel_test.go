package fastpath

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestH2ClientResetClosesBackend: an HTTP/2 client that gives up on a
// request (RST_STREAM CANCEL, or its connection dies) makes loopgate close
// the backend connection at once, so the app sees the disconnect instead
// of answering into the void at the end of its work, and the next request
// is served.
func TestH2ClientResetClosesBackend(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T, h *tlsHarness) (giveUp func())
	}{
		{"stream reset", func(t *testing.T, h *tlsHarness) func() {
			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/slow"), nil)
			if err != nil {
				t.Fatal(err)
			}
			c := h.client(true)
			errc := make(chan error, 1)
			go func() {
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			return func() {
				cancel() // the Go client sends RST_STREAM CANCEL
				select {
				case err := <-errc:
					if !errors.Is(err, context.Canceled) {
						t.Errorf("canceled request: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Error("canceled request did not return")
				}
			}
		}},
		{"connection closed", func(t *testing.T, h *tlsHarness) func() {
			r := dialRawH2(t, h)
			if _, err := r.c.Write(h2frame(0x1, 0x5, 1, r.block("/slow", h.addr))); err != nil { // HEADERS, END_STREAM|END_HEADERS
				t.Fatal(err)
			}
			return func() { _ = r.c.Close() }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTLSHarness(t, Config{})
			started := make(chan struct{}, 1)
			gone := make(chan time.Time, 1)
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/slow" {
					_, _ = io.WriteString(w, "ok")
					return
				}
				started <- struct{}{}
				select {
				case <-r.Context().Done(): // net/http saw the connection close
					gone <- time.Now()
				case <-time.After(10 * time.Second):
					_, _ = io.WriteString(w, "late")
				}
			})
			giveUp := tc.start(t, h)
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("the app never got the request")
			}
			at := time.Now()
			giveUp()
			select {
			case g := <-gone:
				if d := g.Sub(at); d > time.Second {
					t.Errorf("the app saw the disconnect %v after the client gave up", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the app did not see its connection close within 3 s of the client giving up")
			}
			healthy(t, h)
		})
	}
}
