package bpf

import (
	"fmt"
)

// Counter indexes in the counters map; they mirror the enum in sockmap.c.
const (
	counterRedirectMsgs uint32 = iota
	counterRedirectBytes
	counterPassMsgs
	counterPassBytes
	counterSocketsAdded
	counterAddErrors
	counterFallbacks
	counterReleased
	counterMax
)

// Counters are totals since Load, summed over all CPUs. A message is one
// sendmsg (or one chunk of a large one) on an accelerated socket.
type Counters struct {
	Redirected      uint64 // messages redirected to the peer socket
	RedirectedBytes uint64 // bytes in those messages
	Passed          uint64 // messages on accelerated sockets that took the TCP path
	PassedBytes     uint64 // bytes in those messages
	SocketsAdded    uint64 // sockets put in the sockmap
	AddErrors       uint64 // sockets that qualified but did not fit (map full)
	Fallbacks       uint64 // sockets sent back to TCP because their peer fell behind (Options.QueueLimit)
	Released        uint64 // of those, sockets that left the sockmap for plain TCP (Accel.Release)
}

// Counters reads the per-CPU counters and sums them.
func (a *Accel) Counters() (Counters, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return Counters{}, fmt.Errorf("reading sockmap counters: %w", ErrClosed)
	}
	var sums [counterMax]uint64
	var perCPU []uint64
	for i := range counterMax {
		if err := a.objs.Counters.Lookup(i, &perCPU); err != nil {
			return Counters{}, fmt.Errorf("reading sockmap counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	return Counters{
		Redirected:      sums[counterRedirectMsgs],
		RedirectedBytes: sums[counterRedirectBytes],
		Passed:          sums[counterPassMsgs],
		PassedBytes:     sums[counterPassBytes],
		SocketsAdded:    sums[counterSocketsAdded],
		AddErrors:       sums[counterAddErrors],
		Fallbacks:       sums[counterFallbacks],
		Released:        sums[counterReleased],
	}, nil
}
