// Package sdnotify tells systemd (or any service manager that speaks the
// sd_notify protocol) how loopgate is doing: READY=1 once the listeners are
// up, RELOADING=1 with MONOTONIC_USEC while SIGHUP is being handled (the form
// systemd 253 and later expect from Type=notify-reload units, harmless to
// older ones), STOPPING=1 when a drain starts, and STATUS= lines for
// `systemctl status`.
//
// It only sends datagrams to the socket named by NOTIFY_SOCKET (a filesystem
// path or an abstract name starting with '@'). It does not implement the
// watchdog, file-descriptor store or socket activation.
package sdnotify
