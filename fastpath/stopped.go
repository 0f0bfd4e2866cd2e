// The 503 answer for an app an operator stopped (`loopgate stop`), and
// HTTP.sys's 503 page it shares with the queue-full answer (queue.go).

package fastpath

import "github.com/valyala/fasthttp"

// pageServiceUnavailable is the page HTTP.sys sends, with 503, for a
// request to a stopped IIS application pool or one whose queue is full,
// lines ending in CRLF as there. It names no app and no reason: clients
// see it; operators see the app_stopped log line and the stopped state in
// /status, or the 503s in the access log.
var pageServiceUnavailable = []byte("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n" +
	"<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n" +
	"<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n" +
	"<BODY><h2>Service Unavailable</h2>\r\n" +
	"<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n" +
	"</BODY></HTML>\r\n")

// answerStopped answers a request for a stopped app.
func (x *exchange) answerStopped() bool {
	return x.answerPage(fasthttp.StatusServiceUnavailable, pageServiceUnavailable)
}
