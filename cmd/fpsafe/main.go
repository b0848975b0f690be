// Command fpsafe is a false-positive-safe filtering milter for Postfix and Sendmail: it asks
// clamd, spamd and rspamd about every message at once, tags doubtful mail, quarantines only
// clearly malicious mail, and never rejects, discards or tempfails.
//
// Usage:
//
//	fpsafe serve  [-config FILE]                run the milter
//	fpsafe check  [-config FILE] [flags] [FILE.eml | -]   decide about one message, offline
//	fpsafe config check [-config FILE]          validate and print the effective config
//	fpsafe allowlist list|add|remove|test|lint|import|export [-config FILE] ...
//	fpsafe version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdin, stdout, stderr)
	case "config":
		if len(args) > 1 && args[1] == "check" {
			return cmdConfigCheck(args[2:], stdout, stderr)
		}
		fmt.Fprintln(stderr, "usage: fpsafe config check [-config FILE]")
		return 2
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "allowlist":
		return cmdAllowlist(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "fpsafe", version)
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "fpsafe: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: fpsafe COMMAND [flags]

commands:
  serve         run the milter (Postfix smtpd_milters / Sendmail INPUT_MAIL_FILTER)
  check         decide about one message offline and print the decision
  config check  validate a config file and print the effective config
  allowlist     list, add, remove, test, lint, import and export allowlist entries
  replay        run a Maildir, mbox or folder of .eml through the pipeline; compare two configs
  explain       print the decision record of a queue id ("why was this message tagged?")
  version       print the version

Every command takes -config FILE (or --config FILE); without it the embedded default
config is used. Run "fpsafe COMMAND -h" for a command's flags.
`)
}
