// The third-party test tools the suites build from source, pinned with
// their dependencies (go.sum), apart from loopgate's own module so none of
// them reaches loopgate's build. Build one with
//
//	go build -C suites/tools -o DIR/h2spec github.com/summerwind/h2spec/cmd/h2spec
module github.com/loopgate/loopgate/suites/tools

go 1.26.0

tool github.com/summerwind/h2spec/cmd/h2spec

require (
	github.com/fatih/color v1.19.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/summerwind/h2spec v2.2.1+incompatible // indirect
	golang.org/x/net v0.63.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
