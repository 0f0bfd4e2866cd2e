package bpf

// The committed sockmap_bpfel.{go,o} come from this line (make generate);
// regenerate_test.go checks that they still match sockmap.c. Only bpfel is
// built: loopgate ships for little-endian hosts (amd64, arm64).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -type sock_key sockmap sockmap.c -- -O2 -g -Wall -Werror -Iinclude
