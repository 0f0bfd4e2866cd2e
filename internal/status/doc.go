// Package status defines the JSON document that a running `loopgate serve`
// publishes on its admin endpoint at /status, fetches it for
// `loopgate status`, and renders it as a table for people.
//
// The document is a wire format read by scripts: fields are only ever added,
// never renamed. It is filled in by cmd/loopgate from the supervisor's
// snapshots; this package knows nothing about processes itself.
package status
