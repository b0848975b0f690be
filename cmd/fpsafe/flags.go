package main

import (
	"flag"
	"io"
	"strings"
)

// newFlagSet returns a flag set with the -config flag every subcommand takes. The standard
// library's flag package treats -config and --config alike.
func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("fpsafe "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file (default: the embedded default config)")
	return fs, cfg
}

// parseInterleaved parses flags that may come before or after positional arguments
// ("fpsafe check msg.eml --from a@b" works as well as the other order). "--" ends flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		// Parse stopped at a positional argument: keep it and parse on after it.
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// multiFlag collects a repeated string flag such as --rcpt.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
