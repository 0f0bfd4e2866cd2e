# loopgate container image.
#
#   docker build -t loopgate .
#   docker run --init --rm -p 8080:8080 -v "$PWD/publish:/app:ro" loopgate
#
# The default runtime stage is the ASP.NET Core runtime image, so a published
# ASP.NET Core app (`dotnet publish -o publish`, whose web.config says
# processPath="dotnet" arguments=".\MyApp.dll") mounted or copied at /app
# runs unchanged. For other backends (Go, Python, Node...), pick another base:
#
#   docker build --build-arg RUNTIME_BASE=gcr.io/distroless/static-debian12 -t loopgate:static .
#   docker build --build-arg RUNTIME_BASE=debian:bookworm-slim -t loopgate:slim .
#
# Defaults: `loopgate serve --listen :8080 --admin :9180 /app`, running as the
# non-root UID 1654 (the aspnet image's "app" user; set RUNTIME_UID for
# another base). The admin endpoint listens on all interfaces inside the
# container so probes can reach it: do not publish port 9180 to the world.
# Run with --init (or tini): loopgate then is not PID 1 and orphaned
# grandchildren of a backend get reaped.
#
# eBPF loopback acceleration (--accel auto, the default) needs CAP_BPF, CAP_PERFMON and
# CAP_NET_ADMIN in the effective set and a cgroup v2 hierarchy, which a
# non-root user does not get from --cap-add. Without them loopgate logs why
# and forwards over plain loopback TCP, which is what this image does by
# default. To enable it:
#   docker run --init --user 0 --cap-add BPF --cap-add PERFMON --cap-add NET_ADMIN ... loopgate
# (the backends then run as root too).

ARG GO_VERSION=1.26
ARG RUNTIME_BASE=mcr.microsoft.com/dotnet/aspnet:9.0

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/loopgate ./cmd/loopgate \
 && mkdir -p /out/app

FROM ${RUNTIME_BASE}
ARG RUNTIME_UID=1654
COPY --from=build /out/loopgate /usr/local/bin/loopgate
# An empty, non-root-owned /app so the image starts (and `loopgate serve`
# reports the missing web.config) even before an app is mounted.
COPY --from=build --chown=${RUNTIME_UID}:${RUNTIME_UID} /out/app /app
WORKDIR /app
# The aspnet image tells Kestrel to listen on :8080, loopgate's own port. A
# hosted app listens where ASPNETCORE_PORT says (IIS integration overrides
# the ports), but clear the hint so nothing else in /app binds 8080.
ENV ASPNETCORE_HTTP_PORTS=
USER ${RUNTIME_UID}:${RUNTIME_UID}
EXPOSE 8080 9180
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/loopgate"]
CMD ["serve", "--listen", ":8080", "--admin", ":9180", "/app"]
