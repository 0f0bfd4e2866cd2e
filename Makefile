# loopgate — build, test and run. Every target works on a fresh Debian
# machine with only Go installed; targets that need Debian packages install
# them (as root) or say exactly what is missing.

GO       ?= go
BIN      := bin/loopgate
EXAMPLE  := examples/hello
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
LISTEN   ?= 127.0.0.1:8080
ADMIN    ?= 127.0.0.1:9180
# A count, not a duration: go1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" at a -fuzztime duration's end under load, with
# no failing input (go.dev/issue/75804, fixed in go1.27); a count has no
# deadline. 20000 runs take 2-7 s per target here.
FUZZTIME ?= 20000x

.PHONY: build example test suites race run bench generate lint docker bpf-deps suite-deps page-deps clean

# A cold build shows nothing for minutes (modules download, the standard
# library compiles): say so before the first one.
build:
	@[ -x $(BIN) ] || echo "building $(BIN): the first build downloads and compiles the dependencies and can take a few minutes"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/loopgate

# The example backend is built next to its web.config, where processPath finds it.
example:
	@[ -x $(EXAMPLE)/hello ] || echo "building $(EXAMPLE)/hello, the example backend"
	CGO_ENABLED=0 $(GO) build -trimpath -o $(EXAMPLE)/hello ./$(EXAMPLE)

test: bpf-deps suite-deps page-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./configload
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzHeaderRewrite$$' -fuzztime $(FUZZTIME) ./fastpath
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime $(FUZZTIME) ./fastpath

# The third-party suites alone (package suites: WebSocket frame cases
# against gorilla/websocket, h2spec built from suites/tools, python3
# http.server and gunicorn hosted through a web.config); part of test.
suites: suite-deps
	$(GO) test -count=1 -v ./suites

run: build example
	$(BIN) serve --listen $(LISTEN) --admin $(ADMIN) $(EXAMPLE)

# The race detector needs cgo (gcc); not part of test, which must run with Go alone.
race:
	CGO_ENABLED=1 $(GO) test -count=1 -race ./supervisor/... ./fastpath/... ./pairing/... ./internal/...

# The micro-benchmarks bench/README.md lists. bpf's sockmap rows need root
# (CAP_BPF and a cgroup v2 to attach to); without it they skip and its tcp rows run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./fastpath/... ./supervisor/... ./bpf/... ./pairing/... ./internal/metrics/... ./bench/...

# loopgate vs nginx vs HAProxy on this machine (installs them from Debian as
# root when missing); writes bench/results/latest.md and latest.svg.
.PHONY: bench-compare bench-guard
bench-compare:
	$(GO) run ./bench/cmd/compare

# How low a Go proxy's CPU per small GET goes: wrk through nginx, loopgate,
# bare fasthttp (Server + HostClient) and a one-thread epoll loop,
# interleaved, as ratios to nginx (needs nginx and wrk: bench-compare installs
# them). Not part of test.
.PHONY: bench-floor
bench-floor:
	$(GO) run ./bench/cmd/floor

# Hot-path micro-benchmarks, the working tree against the commit named in
# bench/baseline-ref, run alternately (6 rounds): fails on any allocation or a
# significant slowdown beyond 15 %. Not part of test.
bench-guard:
	$(GO) run ./bench/cmd/guard

# HTTP/2 vs HTTP/1.1 over TLS with h2load (nghttp2-client, installed from
# Debian as root when missing): loopgate and nginx; writes bench/results/h2-latest.md.
.PHONY: bench-h2
bench-h2:
	$(GO) run ./bench/cmd/h2compare

# Unary gRPC calls/s and p50/p99 through loopgate (backendProtocol=h2c) vs
# grpc-go direct vs nginx grpc_pass, interleaved (nginx from Debian); writes
# bench/results/grpc-latest.md. Not part of make test.
.PHONY: bench-grpc
bench-grpc:
	$(GO) run ./bench/cmd/grpccompare

# bpf2go needs clang, llvm (llvm-strip) and libbpf-dev (bpf_helpers.h).
generate: bpf-deps
	$(GO) generate ./bpf/...

# Installs the eBPF toolchain when it is missing and we may (root with
# apt-get); otherwise says what is missing. Tests that need clang skip
# with that reason.
bpf-deps:
	@if command -v clang >/dev/null 2>&1 && command -v llvm-strip >/dev/null 2>&1 && [ -f /usr/include/bpf/bpf_helpers.h ]; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing clang llvm libbpf-dev for the eBPF objects"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev >/dev/null || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev >/dev/null; }; \
	else \
		echo "note: clang, llvm and libbpf-dev are missing (apt-get install clang llvm libbpf-dev); eBPF regeneration checks will skip"; \
	fi

# The suites' non-Go backends: gunicorn (and with it python3) from Debian,
# installed when missing and we may (root with apt-get); otherwise says
# what is missing, and those tests skip (fail under .ci/run, which sets
# LOOPGATE_REQUIRE_SUITES=1). h2spec needs no package: the suites build it
# with go from suites/tools.
# Headless Chromium renders the admin status page in its test (layout at a
# phone's and a desktop's width); installed from Debian as root, else the
# test skips and says why.
page-deps:
	@if command -v chromium >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the status page's rendering test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; \
	else \
		echo "note: chromium is missing (apt-get install chromium); the status page's rendering test will skip"; \
	fi

suite-deps:
	@if command -v gunicorn >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 && command -v node >/dev/null 2>&1 && \
		/usr/bin/python3 -c 'import uvicorn' >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing gunicorn, python3, python3-uvicorn and nodejs for the suites' and examples' non-Go backends"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gunicorn python3 python3-uvicorn nodejs >/dev/null || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gunicorn python3 python3-uvicorn nodejs >/dev/null; }; \
	else \
		echo "note: gunicorn, python3, python3-uvicorn or nodejs is missing (apt-get install gunicorn python3 python3-uvicorn nodejs); the tests of those backends will skip"; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

docker:
	@if docker info >/dev/null 2>&1; then docker build -t loopgate:$(VERSION) .; \
	else echo "docker: no Docker engine reachable (docker info failed); build the image on a machine with one"; exit 1; fi

clean:
	rm -rf bin $(EXAMPLE)/hello
