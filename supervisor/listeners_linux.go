package supervisor

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/loopgate/loopgate/internal/sockdiag"
)

var _ listenerOS = realOS{}

// Listeners returns the TCP addresses that the process pid and its
// descendants listen on: the tree from /proc (processTree), each process's
// sockets from the "socket:[inode]" links in /proc/N/fd, and of the
// listening sockets of pid's network namespace those with one of these
// inodes. In loopgate's own namespace the listening sockets come from the
// kernel's socket diagnostics (sockdiag, about 0.25 ms); in another one,
// from /proc/pid/net/tcp and tcp6, whose every read walks the kernel's
// whole connection hash (several ms of CPU, taken from the starting app).
// Processes that go away while it reads are skipped; a process it may not
// read (another user's) contributes nothing.
func (realOS) Listeners(pid int) ([]netip.AddrPort, error) {
	inodes := map[string]bool{}
	for _, p := range processTree(pid) {
		dir := "/proc/" + strconv.Itoa(p) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(dir + "/" + fd.Name())
			if err == nil && strings.HasPrefix(l, "socket:[") && strings.HasSuffix(l, "]") {
				inodes[l[len("socket:["):len(l)-1]] = true
			}
		}
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	if sameNetNS(pid) {
		socks, err := sockdiag.Listening()
		if err == nil {
			var out []netip.AddrPort
			for _, s := range socks {
				if inodes[strconv.FormatUint(uint64(s.Inode), 10)] && !slices.Contains(out, s.Addr) {
					out = append(out, s.Addr)
				}
			}
			return out, nil
		}
	}
	var out []netip.AddrPort
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + table)
		if err != nil {
			if table == "tcp6" && os.IsNotExist(err) {
				continue // IPv6 disabled
			}
			return nil, err
		}
		out = append(out, parseListenTable(data, inodes)...)
	}
	return out, nil
}

// sameNetNS reports whether pid is in loopgate's network namespace.
func sameNetNS(pid int) bool {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return false
	}
	other, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net")
	return err == nil && os.SameFile(self, other)
}

// processTree returns pid and every descendant of it. Each thread's
// children are in /proc/N/task/T/children, so the walk reads only the
// tree's own files; on a kernel without that file
// (CONFIG_PROC_CHILDREN) it falls back to the parent PIDs of all
// processes (allProcessTree). A backend's children (a shell wrapper's
// server, a process manager's workers) count as the app.
func processTree(pid int) []int {
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		dir := "/proc/" + strconv.Itoa(tree[i]) + "/task"
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue // gone
		}
		for _, t := range tasks {
			data, err := os.ReadFile(dir + "/" + t.Name() + "/children")
			if errors.Is(err, fs.ErrNotExist) && i == 0 {
				if _, serr := os.Stat(dir + "/" + t.Name()); serr == nil {
					return allProcessTree(pid) // the kernel has no children files
				}
			}
			for _, f := range strings.Fields(string(data)) {
				if c, err := strconv.Atoi(f); err == nil && !slices.Contains(tree, c) {
					tree = append(tree, c)
				}
			}
		}
	}
	return tree
}

// allProcessTree is processTree through the parent PIDs of all processes.
func allProcessTree(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if ppid, ok := statPPID(stat); ok {
			children[ppid] = append(children[ppid], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// statPPID reads the parent PID from /proc/N/stat: "pid (comm) state ppid
// ...", where comm may hold spaces and parentheses, so the fields are
// counted from the last ')'.
func statPPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// parseListenTable returns the local addresses of the LISTEN sockets (st
// 0A) in a /proc/net/tcp or tcp6 table whose inode is in inodes. Addresses
// are hex, in host byte order per 32-bit word (little-endian on the
// machines loopgate runs on); ports are big-endian hex.
func parseListenTable(data []byte, inodes map[string]bool) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			continue
		}
		if ap, ok := parseProcAddr(f[1]); ok && !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

// parseProcAddr parses "0100007F:1388" (127.0.0.1:5000) or its 32-digit
// IPv6 form.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	for w := 0; w < len(raw); w += 4 { // each 32-bit word is little-endian
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}
