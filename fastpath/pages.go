// The error pages loopgate renders: 502.5 and 502.3.

package fastpath

import (
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
)

// render502_5 builds the 502.5 page from the reference's
// ancm_error_page.htm template (ancm-spec.md §3.2): title and h1
// "HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure", the common
// solutions list, the troubleshooting steps and the troubleshooting link,
// with `<a href="LINK"> <cite> LINK </cite></a> and ` before that link when
// ANCM_ADDITIONAL_ERROR_PAGE_LINK is set. Lines end in CRLF and the body ends
// with "</html>\r\n", as the reference's page does. The link is HTML-escaped
// (the reference inserts it raw); a plain URL is unchanged by that except
// for '&'.
//
// The troubleshooting steps are loopgate's: the reference sends a Linux
// operator to "the system event log", which does not exist here. They
// point at what does: the start_failed line in loopgate's log (command
// line, exit status, the app's first output), `loopgate status`, and the
// app's stdout log files when stdoutLogEnabled is on (else where its output
// goes instead). As in the reference, no detail of the failure itself is on
// the page: clients see it, operators read the log.
func render502_5(additionalLink string, output appOutput) []byte {
	const title = "HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure"
	const reasons = "<h2> Common solutions to this issue: </h2>" +
		"<ul><li> The application process failed to start </li>" +
		"<li> The application process started but then stopped </li>" +
		"<li> The application process started but failed to listen on the configured port </li></ul>"
	extra := ""
	if additionalLink != "" {
		l := html.EscapeString(additionalLink)
		extra = `<a href="` + l + `"> <cite> ` + l + ` </cite></a> and `
	}
	stdout := outputSteps[output]
	page := strings.NewReplacer(
		"{title}", title,
		"{reasons}", reasons,
		"{stdout}", stdout,
		"{extra}", extra,
	).Replace(errorPageTemplate)
	return []byte(strings.ReplaceAll(page, "\n", "\r\n"))
}

// appOutput is where an app's stdout and stderr go, for the 502.5 page.
type appOutput uint8

const (
	outputRelayed   appOutput = iota // into loopgate's log (the default)
	outputFile                       // stdoutLogEnabled="true"
	outputDiscarded                  // enableOutOfProcessConsoleRedirection="false"
)

// outputOf says where spec sends the app's output.
func outputOf(spec *configload.AppSpec) appOutput {
	switch {
	case !spec.ConsoleRedirection:
		return outputDiscarded
	case spec.StdoutLogEnabled:
		return outputFile
	}
	return outputRelayed
}

// outputSteps are the troubleshooting step about the app's own output.
var outputSteps = [...]string{
	outputRelayed:   `The application process' stdout and stderr are in loopgate's log, each line with the app and its process ID; <code>stdoutLogEnabled="true"</code> in web.config writes them to files instead`,
	outputFile:      `Read the application process' stdout log: one file per start, named after <code>stdoutLogFile</code> in web.config with the start time and the process ID`,
	outputDiscarded: `The application process' stdout and stderr are discarded (<code>enableOutOfProcessConsoleRedirection="false"</code> in web.config); without that setting they are in loopgate's log`,
}

// errorPageTemplate is the reference's ancm_error_page.htm with its printf
// fields named: {title} twice, {reasons}, the empty "specific error" field
// and {extra}; its troubleshooting steps are loopgate's, with {stdout}.
const errorPageTemplate = `<!DOCTYPE html>
<html lang="en-US" xmlns="http://www.w3.org/1999/xhtml">
    <head>
        <meta charset="utf-8" />
        <title> {title} </title>
        <style>
            body {
                font-family: 'Segoe UI', Tahoma, Arial, Helvetica, sans-serif;
                font-size: .813em;
                color: #222;
                background-color: #fff;
            }

            h1, h2, h3, h4, h5 {
                /*font-family: 'Segoe UI',Tahoma,Arial,Helvetica,sans-serif;*/
                font-weight: 100;
            }

            h1 {
                color: #44525e;
                margin: 15px 0 15px 0;
            }

            h2 {
                margin: 10px 5px 0 0;
            }

            h3 {
                color: #363636;
                margin: 5px 5px 0 0;
            }

            code {
                font-family: Consolas, "Courier New", courier, monospace;
            }

            body .titleerror {
                padding: 3px 3px 6px 3px;
                display: block;
                font-size: 1.5em;
                font-weight: 100;
            }

            a {
                color: #1ba1e2;
                text-decoration: none;
            }

                a:hover {
                    color: #13709e;
                    text-decoration: underline;
                }

            li {
                margin: 5px;
            }

        </style>
    </head>
    <body>
        <h1> {title} </h1>

        {reasons}

        

        <h2> Troubleshooting steps: </h2>
        <ul>
            <li> Find the app's <code>start_failed</code> line in loopgate's log (<code>journalctl -u loopgate</code>, <code>docker logs</code> or the <code>--log-file</code>): it holds the command line, the exit status and the first output of the application process </li>
            <li> Run <code>loopgate status</code> on the server: it shows the app's state and its last start error </li>
            <li> {stdout} </li>
            <li> Run the command from that log line by hand, in the app's directory and with <code>ASPNETCORE_PORT</code> set: the app must listen on 127.0.0.1 at that port </li>
        </ul>

        <h2>
            For more information and guidance on handling these errors, visit
            {extra} <a href="https://go.microsoft.com/fwlink/?LinkID=2028526"> <cite>Troubleshoot ASP.NET Core on Azure App Service and IIS</cite></a>.
        </h2>
    </body>
</html>
`

// badGateway is what loopgate knows of why a backend failed before its
// response head was complete: the cause the 502.3 page and the log name.
type badGateway uint8

const (
	gatewayUnknown  badGateway = iota // no more is known
	gatewayRefused                    // connect: ECONNREFUSED
	gatewayConnect                    // connect: another failure, or --backend-connect-timeout
	gatewayReset                      // ECONNRESET or EPIPE while sending or reading
	gatewayClosed                     // closed without a byte of response
	gatewayCut                        // closed in the middle of the response head
	gatewayTimeout                    // requestTimeout expired with no data
	gatewayInvalid                    // the response head was not valid HTTP
	gatewayTooLarge                   // the response head exceeded MaxResponseHeaderBytes
)

// gatewayCodes name the causes in the log (the "cause" field).
var gatewayCodes = [...]string{
	gatewayUnknown: "unknown", gatewayRefused: "connection_refused", gatewayConnect: "connect_failed",
	gatewayReset: "connection_reset", gatewayClosed: "closed_without_response", gatewayCut: "response_cut",
	gatewayTimeout: "request_timeout", gatewayInvalid: "invalid_response", gatewayTooLarge: "response_head_too_large",
}

func (g badGateway) String() string { return gatewayCodes[g] }

// gatewayCause classifies the error an attempt failed with at stage st.
func gatewayCause(st stage, err error) badGateway {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case err == nil:
		return gatewayUnknown
	case errors.Is(err, syscall.ECONNREFUSED):
		return gatewayRefused
	case st == stageConnect || st == stageRedial:
		return gatewayConnect
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout):
		return gatewayTimeout
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return gatewayReset
	case st == stageNoResponse || (st == stageSend && errors.Is(err, io.EOF)):
		return gatewayClosed
	case errors.Is(err, io.ErrUnexpectedEOF) || (st == stageBadResponse && errors.Is(err, io.EOF)):
		return gatewayCut
	case errors.As(err, &small):
		return gatewayTooLarge
	case st == stageBadResponse || errors.Is(err, errInterim) || errors.Is(err, errBadSwitch):
		return gatewayInvalid
	}
	return gatewayUnknown
}

// page502_3Start and page502_3End frame the 502.3 page: title and h1
// "HTTP Error 502.3 - Bad Gateway" and the reference's sentence, then one
// paragraph naming the cause when loopgate knows it.
const (
	page502_3Start = "<!DOCTYPE html>\r\n<html lang=\"en-US\">\r\n<head><meta charset=\"utf-8\" />" +
		"<title> HTTP Error 502.3 - Bad Gateway </title></head>\r\n<body>\r\n" +
		"<h1> HTTP Error 502.3 - Bad Gateway </h1>\r\n" +
		"<p> There was a connection error while trying to route the request. </p>\r\n"
	page502_3End = "</body>\r\n</html>\r\n"
)

// gatewayTexts say each cause to the client, as a paragraph of the page.
var gatewayTexts = [...]string{
	gatewayUnknown:  "",
	gatewayRefused:  "The application refused the connection: it is not listening on its port.",
	gatewayConnect:  "loopgate could not connect to the application.",
	gatewayReset:    "The application reset the connection.",
	gatewayClosed:   "The application closed the connection without answering.",
	gatewayCut:      "The application closed the connection in the middle of its response.",
	gatewayTimeout:  "", // page502_3Timeout
	gatewayInvalid:  "The application's response was not valid HTTP.",
	gatewayTooLarge: "The application's response headers were too large.",
}

// gatewayPages are the 502.3 pages for the causes whose text is fixed,
// built once; page502_3 is the one without a cause.
var gatewayPages = func() (pages [len(gatewayTexts)][]byte) {
	for g, text := range gatewayTexts {
		pages[g] = render502_3(text)
	}
	return pages
}()

var page502_3 = gatewayPages[gatewayUnknown]

func render502_3(cause string) []byte {
	if cause == "" {
		return []byte(page502_3Start + page502_3End)
	}
	return []byte(page502_3Start + "<p> " + cause + " </p>\r\n" + page502_3End)
}

// page502_3Timeout is the 502.3 page for requestTimeout d expiring,
// written as web.config writes it: "requestTimeout of 00:02:00 expired".
func page502_3Timeout(d time.Duration) []byte {
	d = d.Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	return render502_3(fmt.Sprintf("The application sent nothing for requestTimeout of %02d:%02d:%02d, which expired.", h, m, s))
}
