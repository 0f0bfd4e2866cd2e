// The Observer interface and RequestInfo: what metrics and access logs
// are told about each finished request.

package fastpath

import (
	"net"
	"time"
)

// Observer is told about every request the front server finished, for
// metrics and access logs. ObserveRequest runs on the request's goroutine
// after the last response byte was handed to the kernel (or the request
// failed), so it must be fast and must not block; an implementation must be
// safe for concurrent use. RequestInfo is passed by value so the call
// allocates nothing.
type Observer interface {
	ObserveRequest(RequestInfo)
}

// RequestInfo describes one finished request. The byte slices and RemoteAddr
// point into the connection's buffers: they are valid only during
// ObserveRequest and must be copied to be retained.
type RequestInfo struct {
	// App is the name of the app the request was routed to (its virtual
	// path, "/" or "/api"); empty when no app matched or the request was
	// rejected before routing (400, 431).
	App string
	// Method is the request method, bounded to a few classes for labels.
	Method MethodClass
	// Status is the status code the client got; 0 when the connection was
	// reset before a status line was sent.
	Status int
	// Duration runs from the first byte of the request to the end of the
	// response (or the end of a WebSocket tunnel).
	Duration time.Duration
	// BytesIn counts request body bytes forwarded to the backend (tunnel
	// bytes from the client for a WebSocket); BytesOut counts response body
	// bytes sent to the client (tunnel bytes to the client).
	BytesIn, BytesOut int64
	// PID is the backend process that served the request; 0 if none did.
	PID int
	// Retried is true when the request was sent again after its first try
	// could not reach the backend.
	Retried bool
	// Upgraded is true for a WebSocket tunnel (status 101).
	Upgraded bool
	// Aborted is true when the response was cut short: the backend or the
	// client failed after the status line was sent.
	Aborted bool

	// RawMethod and Target are the request's method and request target as
	// the client sent them; RemoteAddr is the client's address.
	RawMethod, Target []byte
	RemoteAddr        net.Addr
}

// StatusClass returns "1xx" … "5xx" for Status, or "reset" for 0.
func (i RequestInfo) StatusClass() string {
	switch i.Status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return "reset"
}

// MethodClass is a request method reduced to a bounded set for metric labels.
type MethodClass uint8

const (
	MethodOther MethodClass = iota
	MethodGet
	MethodHead
	MethodPost
	MethodPut
	MethodDelete
	MethodPatch
	MethodOptions
)

var methodNames = [...]string{"OTHER", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

func (m MethodClass) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "OTHER"
}

func classifyMethod(m []byte) MethodClass {
	for i := 1; i < len(methodNames); i++ {
		if string(m) == methodNames[i] {
			return MethodClass(i)
		}
	}
	return MethodOther
}
