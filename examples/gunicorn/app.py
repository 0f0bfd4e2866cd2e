"""A WSGI app for the gunicorn example: answers every request with the
worker's PID and the environment variables loopgate sets, and echoes a
POST body's length."""

import os


def application(environ, start_response):
    n = 0
    if environ.get("REQUEST_METHOD") == "POST":
        n = len(environ["wsgi.input"].read())
    body = (
        "hello from gunicorn worker pid=%d ppid=%d path=%s appl_path=%s posted=%d recycle=%s\n"
        % (
            os.getpid(),
            os.getppid(),
            environ.get("PATH_INFO", ""),
            os.environ.get("ASPNETCORE_APPL_PATH", ""),
            n,
            os.environ.get("RECYCLE", ""),
        )
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
