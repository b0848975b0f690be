package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fpsafe/fpsafe/allowlist"
)

// allowlistUsage lists the compliance team's commands.
const allowlistUsage = `usage: fpsafe allowlist COMMAND [-config FILE] [flags]

commands (on the store the config's [allowlist] names: file or redis):
  list    [--format text|json]                 print the entries
  add     --id ID --match KIND:VALUE --require dmarc|dkim|spf|ip|none
          --reason TEXT --owner TEAM [--expires YYYY-MM-DD] [--ticket T] [--ip CIDR]...
          [--force --force-reason TEXT]        add an entry (audited)
  remove  ID --reason TEXT                     remove an entry (audited)
  test    --from ADDR [--mail-from ADDR] [--ip IP] [--dkim DOMAIN]... [--spf pass|fail]
          [--rcpt ADDR]...                     which entry would match, and is it authenticated?
  lint    [FILE]                               review the list (or a file before installing it);
                                               exit 1 on errors
  import  FILE --reason TEXT                   add every entry of a TOML list file (audited)
  export                                       print the list as a TOML file (lossless)
`

func cmdAllowlist(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, allowlistUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs, cfgPath := newFlagSet("allowlist "+sub, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, allowlistUsage) }
	by := fs.String("by", defaultWho(), "who makes the change, for the audit trail")
	var run func(pos []string, st allowlist.Store) int
	switch sub {
	case "list":
		run = allowlistList(fs, stdout)
	case "add":
		run = allowlistAdd(fs, by, stdout, stderr)
	case "remove":
		reason := fs.String("reason", "", "why the entry goes (required)")
		run = func(pos []string, st allowlist.Store) int {
			if len(pos) != 1 || *reason == "" {
				fmt.Fprintln(stderr, "usage: fpsafe allowlist remove ID --reason TEXT")
				return 2
			}
			return done(stderr, st.Remove(pos[0], *by, *reason), stdout, "removed entry "+pos[0])
		}
	case "test":
		run = allowlistTest(fs, stdout, stderr)
	case "lint":
		run = allowlistLint(stdout, stderr)
	case "import":
		reason := fs.String("reason", "", "why these entries are added (required)")
		run = func(pos []string, st allowlist.Store) int {
			if len(pos) != 1 || *reason == "" {
				fmt.Fprintln(stderr, "usage: fpsafe allowlist import FILE --reason TEXT")
				return 2
			}
			l, err := allowlist.ParseFile(pos[0])
			if err != nil {
				fmt.Fprintln(stderr, "fpsafe allowlist import:", err)
				return 1
			}
			return done(stderr, st.Import(l.Entries(), *by, *reason), stdout, fmt.Sprintf("imported %d entries", l.Len()))
		}
	case "export":
		run = func(pos []string, st allowlist.Store) int { return exportList(stdout, stderr, st.Snapshot()) }
	default:
		fmt.Fprintf(stderr, "fpsafe allowlist: unknown command %q\n%s", sub, allowlistUsage)
		return 2
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe allowlist:", err)
		return 2
	}
	if !cfg.Allowlist.Enabled() && !(sub == "lint" && len(pos) == 1) {
		fmt.Fprintf(stderr, "fpsafe allowlist: %s has no [allowlist] file or redis\n", cfg.Source())
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openStore(ctx, cfg.Allowlist, newLogger(LogConfig{Format: "text", Level: "error"}, stderr))
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe allowlist:", err)
		return 1
	}
	return run(pos, st)
}

// done reports the result of a change.
func done(stderr io.Writer, err error, stdout io.Writer, ok string) int {
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe allowlist:", err)
		return 1
	}
	fmt.Fprintln(stdout, ok)
	return 0
}

func defaultWho() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}

func allowlistList(fs *flag.FlagSet, stdout io.Writer) func([]string, allowlist.Store) int {
	format := fs.String("format", "text", "text or json")
	return func(_ []string, st allowlist.Store) int {
		l := st.Snapshot()
		if *format == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(l.Entries())
			return 0
		}
		now := time.Now()
		for _, e := range l.Entries() {
			state := ""
			if e.Expired(now) {
				state = "  [EXPIRED]"
			}
			fmt.Fprintf(stdout, "%-20s %-32s require=%-5s owner=%s expires=%s%s\n    reason: %s\n", e.ID, e.Match, e.Require, e.Owner, orDash(e.Expires.String()), state, e.Reason)
		}
		fmt.Fprintf(stdout, "%d entries (%s)\n", l.Len(), l.Source())
		return 0
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func allowlistAdd(fs *flag.FlagSet, by *string, stdout, stderr io.Writer) func([]string, allowlist.Store) int {
	var e allowlist.Entry
	var ips multiFlag
	var expires string
	fs.StringVar(&e.ID, "id", "", "entry id (required)")
	fs.StringVar(&e.Match, "match", "", "domain:D, address:A, dkim:D, rcpt:A or ip:CIDR (required)")
	fs.StringVar(&e.Require, "require", "", "dmarc, dkim, spf, ip or none (required)")
	fs.StringVar(&e.Reason, "reason", "", "why this sender must get through (required)")
	fs.StringVar(&e.Owner, "owner", "", "who answers for the entry (required)")
	fs.StringVar(&e.Ticket, "ticket", "", "change ticket")
	fs.StringVar(&expires, "expires", "", "YYYY-MM-DD: the entry stops matching that day")
	fs.Var(&ips, "ip", "with --require ip: a client IP or CIDR; repeat for several")
	force := fs.Bool("force", false, "accept an entry lint calls dangerous (needs --force-reason)")
	forceReason := fs.String("force-reason", "", "why the dangerous entry is accepted (audited)")
	return func(pos []string, st allowlist.Store) int {
		if e.ID == "" || e.Match == "" || e.Require == "" || e.Reason == "" || e.Owner == "" || len(pos) > 0 {
			fmt.Fprintln(stderr, "fpsafe allowlist add: --id, --match, --require, --reason and --owner are required")
			return 2
		}
		e.IPs, e.Added = ips, allowlist.DateOf(time.Now())
		if expires != "" {
			d, err := allowlist.ParseDate(expires)
			if err != nil {
				fmt.Fprintln(stderr, "fpsafe allowlist add: --expires:", err)
				return 2
			}
			e.Expires = d
		}
		if err := dangerous(e, *force, *forceReason); err != nil {
			fmt.Fprintln(stderr, "fpsafe allowlist add:", err)
			return 1
		}
		who := *by
		if *force {
			who += " (forced: " + *forceReason + ")"
		}
		return done(stderr, st.Add(e, who), stdout, "added entry "+e.ID)
	}
}

// dangerous refuses what lint calls unsafe for a new entry: require = "none", and matches
// broader than one registrable domain, unless forced with a reason.
func dangerous(e allowlist.Entry, force bool, reason string) error {
	l, err := allowlist.NewList([]allowlist.Entry{e})
	if err != nil {
		return err
	}
	var problems []string
	if e.Require == allowlist.RequireNone {
		problems = append(problems, `require = "none" lets anyone who writes this sender ride the entry`)
	}
	for _, f := range allowlist.Lint(l, time.Now()) {
		if f.Severity == allowlist.SeverityError || strings.Contains(f.Message, "wider than") {
			problems = append(problems, f.Message)
		}
	}
	switch {
	case len(problems) == 0:
		return nil
	case !force:
		return errors.New(strings.Join(problems, "; ") + " (refused; --force --force-reason TEXT to insist)")
	case strings.TrimSpace(reason) == "":
		return errors.New("--force needs --force-reason TEXT, for the audit trail")
	}
	return nil
}

func allowlistTest(fs *flag.FlagSet, stdout, stderr io.Writer) func([]string, allowlist.Store) int {
	var c allowlist.Claim
	var dkim, rcpts multiFlag
	var ip, spf string
	fs.StringVar(&c.From, "from", "", "header From address")
	fs.StringVar(&c.MailFrom, "mail-from", "", "envelope sender (default: the From address)")
	fs.StringVar(&ip, "ip", "", "client IP")
	fs.Var(&dkim, "dkim", "a domain whose DKIM signature verifies; repeat for several")
	fs.StringVar(&spf, "spf", "none", "SPF result for MAIL FROM: pass, fail, softfail, none")
	fs.Var(&rcpts, "rcpt", "recipient; repeat for several")
	return func(_ []string, st allowlist.Store) int {
		if c.From == "" && len(rcpts) == 0 && ip == "" {
			fmt.Fprintln(stderr, "fpsafe allowlist test: give --from, --ip or --rcpt")
			return 2
		}
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				fmt.Fprintln(stderr, "fpsafe allowlist test: --ip:", err)
				return 2
			}
			c.IP = a
		}
		c.DKIM, c.SPF = dkim, allowlist.Result(spf)
		for _, line := range allowlist.Explain(st.Snapshot(), c.Identity(), rcpts, time.Now()) {
			fmt.Fprintln(stdout, line)
		}
		return 0
	}
}

func allowlistLint(stdout, stderr io.Writer) func([]string, allowlist.Store) int {
	return func(pos []string, st allowlist.Store) int {
		var l *allowlist.List
		if len(pos) == 1 {
			var err error
			if l, err = allowlist.ParseFile(pos[0]); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		} else {
			l = st.Snapshot()
		}
		errs := 0
		for _, f := range allowlist.Lint(l, time.Now()) {
			fmt.Fprintln(stdout, f)
			if f.Severity == allowlist.SeverityError {
				errs++
			}
		}
		fmt.Fprintf(stdout, "%d entries, %d errors\n", l.Len(), errs)
		if errs > 0 {
			return 1
		}
		return 0
	}
}

// exportList prints the list in the file store's TOML format, so that export followed by
// import moves a list between file and Redis without loss.
func exportList(stdout, stderr io.Writer, l *allowlist.List) int {
	fmt.Fprintf(stdout, "# fpsafe allowlist exported from %s on %s\n\n", l.Source(), time.Now().UTC().Format(time.RFC3339))
	if err := toml.NewEncoder(stdout).Encode(struct {
		Entry []allowlist.Entry `toml:"entry"`
	}{l.Entries()}); err != nil {
		fmt.Fprintln(stderr, "fpsafe allowlist export:", err)
		return 1
	}
	return 0
}
