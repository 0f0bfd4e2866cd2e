# A bare ASGI app served by uvicorn. uvicorn takes its port from
# UVICORN_PORT, which web.config sets to %ASPNETCORE_PORT%, and, with its
# default --proxy-headers and --forwarded-allow-ips 127.0.0.1, the client
# from the last X-Forwarded-For entry: forwardedForFormat="ip" makes that a
# bare address.


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    host, port = scope["client"]
    body = f"hello from uvicorn: path={scope['path']} client={host} port={port}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
