package fastpath

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestH2CEarlyHints: a 103 Early Hints from an h2c app reaches the client
// with its Link headers before the final response, as from an HTTP/1.1
// app: an HTTP/2 client as an HTTP/2 informational response, an HTTP/1.1
// client as the bytes of one; another 1xx (102) is dropped, and the final
// response carries only its own Link.
func TestH2CEarlyHints(t *testing.T) {
	h := newTLSHarness(t, Config{})
	h.h2cBackend(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProcessing)
		w.Header().Add("Link", "</style.css>; rel=preload; as=style")
		w.Header().Add("Link", "</app.js>; rel=preload; as=script")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Link", "</final>; rel=canonical")
		_, _ = io.WriteString(w, "page")
	})
	want := []string{"</style.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script"}

	t.Run("HTTP/2 client", func(t *testing.T) {
		var interim []int
		var hints []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hd textproto.MIMEHeader) error {
			interim = append(interim, code)
			if code == http.StatusEarlyHints {
				hints = append(hints, hd.Values("Link")...)
			}
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.url("/"), nil)
		resp, err := h.client(true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "page" ||
			!slices.Equal(interim, []int{http.StatusEarlyHints}) || !slices.Equal(hints, want) ||
			resp.Header.Get("Link") != "</final>; rel=canonical" {
			t.Errorf("HTTP/%d %d %q; interim %v, 103 links %q (want %q); final Link %q",
				resp.ProtoMajor, resp.StatusCode, body, interim, hints, want, resp.Header.Values("Link"))
		}
	})

	t.Run("HTTP/1.1 client", func(t *testing.T) {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		tp := textproto.NewReader(br)
		line, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		hd, err := tp.ReadMIMEHeader()
		if err != nil || line != "HTTP/1.1 103 Early Hints" || !slices.Equal(hd.Values("Link"), want) {
			t.Fatalf("first response %q %v (%v), want 103 with links %q", line, hd, err, want)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "page" || strings.Join(resp.Header.Values("Link"), ",") != "</final>; rel=canonical" {
			t.Errorf("final response %d %q, Link %q", resp.StatusCode, body, resp.Header.Values("Link"))
		}
	})
}
