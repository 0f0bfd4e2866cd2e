// Package pairing owns both halves of the pairing token.
//
// The forwarder side generates tokens (NewToken) that the supervisor hands
// to each backend in ASPNETCORE_TOKEN. The app side is middleware for
// net/http and fasthttp that gives a Go backend the contract of ASP.NET
// Core's IIS integration: reject requests without the right
// MS-ASPNETCORE-TOKEN, honour the graceful shutdown request, strip the path
// base and apply X-Forwarded-For/-Proto from the loopback forwarder.
package pairing
