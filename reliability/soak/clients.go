// The soak's clients' requests: a small GET, a 1 MiB upload checked by the
// app's count and sum, a WebSocket echo session, and the offline answer
// (503 with the offline page) each of them may expect.

package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/websocket"
)

const offlinePage = "<html><body>down for maintenance (soak)</body></html>"

// errOffline marks the expected 503 while app_offline.htm is present.
var errOffline = errors.New("503 app_offline")

// fetch GETs url and returns the body; a 503 with the offline page is
// errOffline.
func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusServiceUnavailable && string(b) == offlinePage {
		return "", errOffline
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %.100q", resp.StatusCode, b)
	}
	return string(b), nil
}

// upload POSTs 1 MiB of random bytes and checks the count and sum the app
// computed.
func upload(c *http.Client, url string) error {
	body := make([]byte, 1<<20)
	rand.Read(body)
	var sum uint32
	for _, b := range body {
		sum += uint32(b)
	}
	resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && string(b) == offlinePage {
		return errOffline
	}
	if want := fmt.Sprintf("n=%d sum=%d", len(body), sum); resp.StatusCode != 200 || string(b) != want {
		return fmt.Errorf("upload: %d %q, want %q", resp.StatusCode, b, want)
	}
	return nil
}

// wsSession opens a WebSocket, echoes 50 messages and closes it.
func wsSession(front string) error {
	cfg, err := websocket.NewConfig("ws://"+front+"/ws", "http://"+front)
	if err != nil {
		return err
	}
	cfg.Dialer = nil
	ws, err := websocket.DialConfig(cfg)
	var de *websocket.DialError
	if errors.As(err, &de) {
		return de.Err // ErrBadStatus: the upgrade was refused
	}
	if err != nil {
		return err
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(20 * time.Second))
	var msg string
	for i := range 50 {
		want := "message " + strconv.Itoa(i)
		if err := websocket.Message.Send(ws, want); err != nil {
			return err
		}
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			return err
		}
		if msg != want {
			return fmt.Errorf("echo %q, want %q", msg, want)
		}
	}
	return nil
}
