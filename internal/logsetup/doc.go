// Package logsetup builds loopgate's zerolog logger from the command-line
// flags: JSON lines by default, a human console format when the destination
// is a terminal (or when asked), a level filter, and an optional log file
// that can be reopened after logrotate moved it away (SIGUSR1).
//
// It decides where log lines go and how they look; what gets logged is the
// business of the packages that log.
package logsetup
