# loopgate as a Nomad service job: three allocations spread over nodes, each
# running loopgate in front of the app baked into its image (build it
# `FROM loopgate` + `COPY publish/ /app/`).
#
#   nomad job run deploy/nomad/loopgate.nomad.hcl
#
# Checks (admin port):
#   /readyz on the http service: failing while loopgate starts, from the
#     moment it gets SIGTERM, and while any app is in crashloop, so the
#     service stops routing to it and a deployment whose new allocations
#     never get healthy is reverted (auto_revert) instead of rolled on;
#   /livez on the admin service, with check_restart: loopgate alone, so a
#     broken app or a long drain never gets loopgate restarted.
#
# Stopping an allocation: Nomad deregisters its services, then sends
# kill_signal; loopgate keeps serving for --shutdown-delay (5 s) while the
# load balancers reading the catalogue catch up, drains for up to
# --drain-timeout (10 s), then stops the backends (shutdownTimeLimit, 10 s by
# default). kill_timeout (30 s, the largest a Nomad client allows by default,
# max_kill_timeout) must exceed the three; a test checks it.
job "loopgate" {
  type = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "loopgate" {
    count = 3

    spread {
      attribute = "${node.unique.id}"
    }

    network {
      port "http" {
        to = 8080
      }
      port "admin" {
        to = 9180
      }
    }

    service {
      name     = "loopgate"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "2s"
        timeout  = "1s"
      }
    }

    service {
      name     = "loopgate-admin"
      port     = "admin"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/livez"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "loopgate" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image = "registry.example.com/myapp-on-loopgate:1.0.0"
        ports = ["http", "admin"]
        args = [
          "serve",
          "--listen=:8080",
          "--admin=:9180",
          "--shutdown-delay=5s",
          "--drain-timeout=10s",
          "--accel=off",
          "/app",
        ]
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
