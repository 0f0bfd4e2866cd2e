// A Node.js app hosted by loopgate without a wrapper script: web.config
// hands it its port as PORT and its mount point as BASE_PATH (loopgate
// substitutes %ASPNETCORE_PORT% and %ASPNETCORE_APPL_PATH% on each start).
// It honours the rest of the ASP.NET Core Module contract in a few lines:
// requests must carry the pairing token, and loopgate's shutdown request
// stops it gracefully.
const http = require("http");

const port = Number(process.env.PORT);
const base = (process.env.BASE_PATH || "/").replace(/\/$/, "");
const token = process.env.ASPNETCORE_TOKEN;

const server = http.createServer((req, res) => {
  // Only loopgate, which knows the token, may talk to the app.
  if (token && req.headers["ms-aspnetcore-token"] !== token) {
    res.writeHead(400).end();
    return;
  }
  // loopgate's graceful shutdown request (before it would send SIGTERM).
  if (req.method === "POST" && req.url === base + "/iisintegration" &&
      req.headers["ms-aspnetcore-event"] === "shutdown") {
    res.writeHead(202).end();
    server.close();
    return;
  }
  // With forwardedForFormat="ip" the last X-Forwarded-For entry is the
  // client's address, as Express's req.ip expects with "trust proxy".
  const xff = (req.headers["x-forwarded-for"] || "").split(",");
  const client = xff[xff.length - 1].trim();
  const path = req.url.startsWith(base) ? req.url.slice(base.length) || "/" : req.url;
  const body = `hello from node: path=${path} base=${base || "/"} client=${client}\n`;
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
process.on("SIGTERM", () => server.close());
