// Command loopgate hosts ASPNETCORE_PORT-speaking apps on Linux the way the
// ASP.NET Core Module's out-of-process hosting model does on IIS.
//
// The command-line contract is in DESIGN.md §1; run `loopgate --help`.
package main

import (
	"fmt"
	"os"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("loopgate", version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: loopgate serve|check|status|version")
	os.Exit(2)
}
