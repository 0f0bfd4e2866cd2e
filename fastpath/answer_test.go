package fastpath

import (
	"bytes"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

func TestStartupErrorPages(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.apps["/"].setOutcome(supervisor.StartFailed)
	c := dialRaw(t, h.addr)

	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 502 || r.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("502.5: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{
		"<title> HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure </title>",
		"<h1> HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure </h1>",
		"<h2> Common solutions to this issue: </h2><ul><li> The application process failed to start </li><li> The application process started but then stopped </li><li> The application process started but failed to listen on the configured port </li></ul>",
		// The troubleshooting steps point a Linux operator at what exists
		// (ancm-spec.md §3.2 has "check the system event log" here).
		"<h2> Troubleshooting steps: </h2>\r\n        <ul>\r\n" +
			"            <li> Find the app's <code>start_failed</code> line in loopgate's log (<code>journalctl -u loopgate</code>, <code>docker logs</code> or the <code>--log-file</code>): it holds the command line, the exit status and the first output of the application process </li>\r\n" +
			"            <li> Run <code>loopgate status</code> on the server: it shows the app's state and its last start error </li>\r\n" +
			"            <li> The application process' stdout and stderr are in loopgate's log, each line with the app and its process ID; <code>stdoutLogEnabled=\"true\"</code> in web.config writes them to files instead </li>\r\n" +
			"            <li> Run the command from that log line by hand, in the app's directory and with <code>ASPNETCORE_PORT</code> set: the app must listen on 127.0.0.1 at that port </li>\r\n" +
			"        </ul>",
		"visit\r\n             <a href=\"https://go.microsoft.com/fwlink/?LinkID=2028526\"> <cite>Troubleshoot ASP.NET Core on Azure App Service and IIS</cite></a>.",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("502.5 page lacks %q", want)
		}
	}
	if !strings.HasSuffix(page, "</html>\r\n") || strings.HasSuffix(page, "\r\n\r\n") {
		t.Errorf("502.5 page must end with exactly </html>\\r\\n: %q", page[len(page)-20:])
	}
	if strings.Contains(page, "event log") {
		t.Error("the 502.5 page sends a Linux operator to the event log")
	}

	// The step about the app's output follows its settings.
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled = true })
	_, body = c.roundTrip(get("a", "/"))
	if want := "<li> Read the application process' stdout log: one file per start, named after <code>stdoutLogFile</code> in web.config with the start time and the process ID </li>"; !strings.Contains(string(body), want) {
		t.Errorf("stdoutLogEnabled: the page lacks %q:\n%s", want, body)
	}
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled, s.ConsoleRedirection = true, false })
	_, body = c.roundTrip(get("a", "/"))
	if want := "<li> The application process' stdout and stderr are discarded (<code>enableOutOfProcessConsoleRedirection=\"false\"</code> in web.config); without that setting they are in loopgate's log </li>"; !strings.Contains(string(body), want) {
		t.Errorf("console redirection off: the page lacks %q:\n%s", want, body)
	}
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled, s.ConsoleRedirection = false, true })

	h.setSpec("/", func(s *configload.AppSpec) { s.AdditionalErrorPageLink = "http://example/more" })
	_, body = c.roundTrip(get("a", "/"))
	if want := `visit` + "\r\n" + `            <a href="http://example/more"> <cite> http://example/more </cite></a> and  <a href="https://go.microsoft.com/fwlink/?LinkID=2028526">`; !strings.Contains(string(body), want) {
		t.Errorf("ANCM_ADDITIONAL_ERROR_PAGE_LINK not inserted before the troubleshooting link:\n%s", body)
	}

	h.setSpec("/", func(s *configload.AppSpec) { s.DisableStartUpErrorPage = true })
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 502 || len(body) != 0 {
		t.Errorf("disableStartUpErrorPage: %d with %d body bytes, want a bare 502", r.StatusCode, len(body))
	}
}

func TestOfflineAndStopping(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.apps["/"].offline = []byte("<html>down for maintenance</html>")
	h.apps["/"].setOutcome(supervisor.Offline)
	c := dialRaw(t, h.addr)
	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || r.Header.Get("Content-Type") != "text/html" || string(body) != "<html>down for maintenance</html>" {
		t.Errorf("offline: %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
	h.apps["/"].setOutcome(supervisor.Stopping)
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || len(body) != 0 {
		t.Errorf("stopping: %d %q, want a bare 503", r.StatusCode, body)
	}
	// Stopped by an operator: HTTP.sys's page for a stopped pool.
	h.apps["/"].setOutcome(supervisor.Stopped)
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || r.Header.Get("Content-Type") != "text/html" || !bytes.Equal(body, pageServiceUnavailable) ||
		!bytes.Contains(body, []byte("<h2>Service Unavailable</h2>")) {
		t.Errorf("stopped: %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
}
