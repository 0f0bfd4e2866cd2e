package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Proxy is a running nginx or HAProxy in front of one backend address.
type Proxy struct {
	*Proc
	TLSAddr string // its TLS listener, "" when ProxyOptions.TLS was false
}

// ProxyOptions are what StartNginx and StartHAProxy open besides a plain
// HTTP listener.
type ProxyOptions struct {
	// TLS adds a second listener, TLS 1.2 and 1.3 with session tickets
	// (the proxies' defaults) offering h2 and http/1.1, with dir/cert.pem
	// and dir/key.pem (WriteCert).
	TLS bool
	// Splice has HAProxy move bodies with splice(2) (option splice-auto).
	Splice bool
}

// PIDs returns the proxy's process and its children (nginx's worker).
func (p *Proxy) PIDs() []int { return append([]int{p.PID()}, Children(p.PID())...) }

// nginxHead opens both nginx configurations: one worker in the
// foreground, its files under {{dir}}, no access log, client keep-alive
// without a request limit; the http block stays open.
const nginxHead = `worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path {{dir}}/body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;
    keepalive_requests 1000000;
    # Large bodies stream as they do through loopgate and HAProxy: no body
    # size limit, uploads passed on as they arrive, responses buffered in
    # memory only (no temporary files).
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;
`

// nginxConf is configured like loopgate forwards: one worker, upstream
// keep-alive, no access log, Host passed through, X-Forwarded-For and
// X-Forwarded-Proto added, the backend's answer relayed. {{tls}} is empty
// for plain HTTP, or nginxTLS for a listener offering h2 and http/1.1.
const nginxConf = nginxHead + `    upstream backend {
        server {{backend}};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen {{listen}}{{tls}};{{extra}}
        location /ws {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 1h;
        }
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`

// HAProxyMaxConn is haproxyConf's maxconn: what the descriptor hard limit
// here (20,000) allows with TLS. Connections past it wait unaccepted.
const HAProxyMaxConn = 7000

// haproxyConf: one thread, maxconn HAProxyMaxConn, connections to the server kept alive and
// shared between clients (http-reuse always), no log, X-Forwarded-For
// (option forwardfor) and X-Forwarded-Proto added.
const haproxyConf = `global
    nbthread 1
    maxconn {{maxconn}}
defaults
    mode http
    timeout connect 2s
    timeout client 75s
    timeout server 120s
    timeout http-keep-alive 75s
    option http-keep-alive
    http-reuse always{{splice}}
frontend fe
    bind {{listen}}{{extra}}
    option forwardfor
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    default_backend be
backend be
    server app {{backend}}
`

// nginxTLS makes nginxConf's listener TLS with HTTP/2 (nginx 1.22 spells
// "http2 on" as a listen parameter), with dir/cert.pem and dir/key.pem,
// TLS 1.2 and 1.3 (1.22's default has no 1.3).
const nginxTLS = ` ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {{dir}}/cert.pem;
        ssl_certificate_key {{dir}}/key.pem`

// nginxExtraTLS is nginxTLS as a second listener beside the plain one
// (ssl_certificate applies to the ssl listeners only).
const nginxExtraTLS = `
        listen {{tlslisten}}` + nginxTLS + `;`

func render(tmpl, dir, listen, backend string) string {
	return strings.NewReplacer("{{dir}}", dir, "{{listen}}", listen, "{{backend}}", backend,
		"{{maxconn}}", strconv.Itoa(HAProxyMaxConn)).Replace(tmpl)
}

// StartNginx runs nginx (from PATH or /usr/sbin) with a configuration in
// dir, proxying a free loopback port (and with o.TLS another, over TLS) to
// backend.
func StartNginx(dir, backend string, cpu int, o ProxyOptions) (*Proxy, error) {
	extra := ""
	if o.TLS {
		extra = nginxExtraTLS
	}
	return startNginx(dir, backend, cpu, "", extra)
}

// StartNginxTLS is StartNginx with its one listener TLS, offering h2 and
// http/1.1; dir must hold cert.pem and key.pem.
func StartNginxTLS(dir, backend string, cpu int) (*Proxy, error) {
	return startNginx(dir, backend, cpu, nginxTLS, "")
}

func startNginx(dir, backend string, cpu int, tls, extra string) (*Proxy, error) {
	return startProxy("nginx", dir, "nginx.conf", cpu, extra != "", func(listen, tlsListen string) string {
		conf := strings.NewReplacer("{{tls}}", tls, "{{extra}}", extra).Replace(nginxConf)
		return strings.ReplaceAll(render(conf, dir, listen, backend), "{{tlslisten}}", tlsListen)
	}, func(bin, conf string) []string {
		return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}
	})
}

// StartHAProxy runs haproxy in the foreground with a configuration in dir,
// proxying a free loopback port (and with o.TLS another, over TLS) to
// backend.
func StartHAProxy(dir, backend string, cpu int, o ProxyOptions) (*Proxy, error) {
	splice, extra := "", ""
	if o.Splice {
		splice = "\n    option splice-auto"
	}
	if o.TLS {
		// HAProxy reads the certificate and its key from one file.
		cert, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "haproxy.pem"), append(cert, key...), 0o600); err != nil {
			return nil, err
		}
		extra = "\n    bind {{tlslisten}} ssl crt {{dir}}/haproxy.pem alpn h2,http/1.1"
	}
	return startProxy("haproxy", dir, "haproxy.cfg", cpu, o.TLS, func(listen, tlsListen string) string {
		conf := strings.NewReplacer("{{splice}}", splice, "{{extra}}", extra).Replace(haproxyConf)
		return strings.ReplaceAll(render(conf, dir, listen, backend), "{{tlslisten}}", tlsListen)
	}, func(bin, conf string) []string { return []string{bin, "-db", "-f", conf} })
}

// startProxy runs the proxy program name (found by lookSbin) pinned to cpu
// with the configuration text(listen, tlsListen) written to dir/confName,
// listen and tlsListen (when withTLS) free loopback addresses, and returns
// once it accepts connections. argv is its command line for the binary and
// the configuration's path.
func startProxy(name, dir, confName string, cpu int, withTLS bool, text func(listen, tlsListen string) string, argv func(bin, conf string) []string) (*Proxy, error) {
	bin, err := lookSbin(name)
	if err != nil {
		return nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var tlsListen string
	if withTLS {
		if tlsListen, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, confName)
	if err := os.WriteFile(conf, []byte(text(listen, tlsListen)), 0o644); err != nil {
		return nil, err
	}
	args := argv(bin, conf)
	p, err := start(name, exec.Command(args[0], args[1:]...), cpu)
	if err != nil {
		return nil, err
	}
	p.Addr = listen
	if err := p.waitListening(); err != nil {
		return nil, err
	}
	if withTLS {
		if err := WaitListening(tlsListen, 10*time.Second); err != nil {
			p.Stop()
			return nil, fmt.Errorf("%s: TLS listener: %w\n%s", name, err, p.Log())
		}
	}
	return &Proxy{Proc: p, TLSAddr: tlsListen}, nil
}

func freeAddr() (string, error) {
	port, err := FreePort()
	return "127.0.0.1:" + strconv.Itoa(port), err
}

func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed (apt-get install %s)", name, name)
	}
	return p, nil
}

// Version returns the first line a proxy prints for -v, e.g.
// "nginx version: nginx/1.22.1".
func Version(name string) string {
	bin, err := lookSbin(name)
	if err != nil {
		return name + ": not installed"
	}
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// nginxGRPCConf is nginx's gRPC proxying set up like loopgate's h2c
// forwarding: one worker, a TLS listener with HTTP/2, grpc_pass to the
// app over h2c with upstream keep-alive, the pairing token and
// X-Forwarded-For/-Proto set, no access log.
const nginxGRPCConf = nginxHead + `    http2_max_concurrent_streams 250;
    upstream app {
        server {{backend}};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen {{listen}} ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {{dir}}/cert.pem;
        ssl_certificate_key {{dir}}/key.pem;
        location / {
            grpc_pass grpc://app;
            grpc_set_header MS-ASPNETCORE-TOKEN "{{token}}";
            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            grpc_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`

// StartNginxGRPC runs nginx with grpc_pass to an h2c app at backend that
// expects token; dir must hold cert.pem and key.pem.
func StartNginxGRPC(dir, backend, token string, cpu int) (*Proxy, error) {
	return startProxy("nginx", dir, "nginx-grpc.conf", cpu, false, func(listen, _ string) string {
		return strings.ReplaceAll(render(nginxGRPCConf, dir, listen, backend), "{{token}}", token)
	}, func(bin, conf string) []string {
		return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}
	})
}
