package fastpath

import (
	"html"
	"strings"
)

// render502_5 builds the 502.5 page exactly as the reference fills its
// ancm_error_page.htm template (ancm-spec.md §3.2): title and h1
// "HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure", the common
// solutions list, the troubleshooting steps and the troubleshooting link,
// with `<a href="LINK"> <cite> LINK </cite></a> and ` before that link when
// ANCM_ADDITIONAL_ERROR_PAGE_LINK is set. Lines end in CRLF and the body ends
// with "</html>\r\n", as the reference's page does. The link is HTML-escaped
// (the reference inserts it raw); a plain URL is unchanged by that except
// for '&'.
func render502_5(additionalLink string) []byte {
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
	page := strings.NewReplacer(
		"{title}", title,
		"{reasons}", reasons,
		"{extra}", extra,
	).Replace(errorPageTemplate)
	return []byte(strings.ReplaceAll(page, "\n", "\r\n"))
}

// errorPageTemplate is the reference's ancm_error_page.htm with its printf
// fields named: {title} twice, {reasons}, the empty "specific error" field
// and {extra}.
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
            <li> Check the system event log for error messages </li>
            <li> Enable logging the application process' stdout messages </li>
            <li> Attach a debugger to the application process and inspect </li>
        </ul>

        <h2>
            For more information and guidance on handling these errors, visit
            {extra} <a href="https://go.microsoft.com/fwlink/?LinkID=2028526"> <cite>Troubleshoot ASP.NET Core on Azure App Service and IIS</cite></a>.
        </h2>
    </body>
</html>
`

// page502_3 is the short page for a backend that could not be reached, reset
// the connection, answered with something that is not HTTP, or went silent
// for requestTimeout. Built once.
var page502_3 = []byte("<!DOCTYPE html>\r\n<html lang=\"en-US\">\r\n<head><meta charset=\"utf-8\" />" +
	"<title> HTTP Error 502.3 - Bad Gateway </title></head>\r\n<body>\r\n" +
	"<h1> HTTP Error 502.3 - Bad Gateway </h1>\r\n" +
	"<p> There was a connection error while trying to route the request. </p>\r\n" +
	"</body>\r\n</html>\r\n")
