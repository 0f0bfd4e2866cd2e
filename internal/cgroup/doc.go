// Package cgroup owns loopgate's use of the cgroup v2 hierarchy: it finds
// the hierarchy's mount point and loopgate's own cgroup, gives each backend
// process a cgroup of its own below loopgate's (so that stopping a backend
// kills every process it left behind, with cgroup.kill, whatever process
// group or session they moved to), reads their CPU and memory use, sets
// each app's memory and CPU limits on the app's cgroup (SetLimits; on a
// hybrid host whose cgroup v2 lacks the memory or cpu controller, on a
// mirror of it in that controller's cgroup v1 hierarchy: v1.go), and runs
// the keeper: a small process that outlives a SIGKILLed loopgate just long
// enough to kill its backends' cgroups and remove them. What a keeper killed
// with its loopgate leaves behind, the next loopgate's Open sweeps.
//
// It is for the supervisor (which spawns into the cgroups) and the eBPF
// loader (which needs the mount point); cmd/loopgate only runs the keeper
// when it is started as one. The only processes it moves are those it
// spawns, and loopgate itself with its keeper: when a limit needs a
// controller that loopgate's own cgroup (not the root) can hand down only
// once no process is in it, they move into a leaf beside loopgate's tree,
// as systemd's DelegateSubgroup= does (leaf.go says why there), and only
// when no other process shares that cgroup. It never writes to a cgroup
// outside the subtree it created, except to enable a controller in
// loopgate's own cgroup's cgroup.subtree_control and, at start, to remove
// the trees of loopgates that are gone from that cgroup.
package cgroup
