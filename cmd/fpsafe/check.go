package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
)

func cmdCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlagSet("check", stderr)
	from := fs.String("from", "", "envelope sender (MAIL FROM)")
	var rcpts multiFlag
	fs.Var(&rcpts, "rcpt", "envelope recipient (RCPT TO); repeat for several")
	ip := fs.String("ip", "", "SMTP client IP address")
	helo := fs.String("helo", "", "HELO/EHLO name")
	queueID := fs.String("queue-id", "", "queue id to report")
	format := fs.String("format", "json", "output format: json or text")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fpsafe check [-config FILE] [--from ADDR] [--rcpt ADDR]... [--ip IP] [--helo NAME] [--format json|text] [FILE.eml | -]")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 1 || (*format != "json" && *format != "text") {
		fs.Usage()
		return 2
	}
	env := mail.Envelope{MailFrom: *from, Rcpts: rcpts, Helo: *helo}
	if *ip != "" {
		a, err := netip.ParseAddr(*ip)
		if err != nil {
			fmt.Fprintf(stderr, "fpsafe check: --ip %q: %v\n", *ip, err)
			return 2
		}
		env.ClientIP = a
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe check:", err)
		return 2
	}
	log := newLogger(LogConfig{Format: cfg.Log.Format, Level: "warn"}, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Milter.DecisionTimeout+5*time.Second)
	defer cancel()
	store, err := openStore(ctx, cfg.Allowlist, log)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe check:", err)
		return 2
	}
	pipe, err := buildPipeline(cfg, log, store)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe check:", err)
		return 2
	}
	m, err := readMessage(pos, stdin, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe check:", err)
		return 1
	}
	defer m.Body.Remove()
	m.Env, m.QueueID = env, *queueID

	dctx, dcancel := context.WithTimeout(ctx, cfg.Milter.DecisionTimeout)
	defer dcancel()
	d := pipe.Run(dctx, m)
	if *format == "text" {
		printText(stdout, d)
		return 0
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		fmt.Fprintln(stderr, "fpsafe check:", err)
		return 1
	}
	return 0
}

// readMessage reads the message named by pos ("-" or nothing = standard input).
func readMessage(pos []string, stdin io.Reader, cfg *Config) (*mail.Message, error) {
	r, name := stdin, "standard input"
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, pos[0]
	}
	m, err := mail.ReadMessage(r, mail.NewSpool(cfg.Milter.SpoolDir, int64(cfg.Milter.SpoolMemory)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// printText prints a decision for a person.
func printText(w io.Writer, d policy.Decision) {
	fmt.Fprintf(w, "action:   %s\nverdict:  %s\nscore:    %.1f\n", d.Action, d.Verdict, d.Score)
	if d.Match != nil {
		fmt.Fprintf(w, "allowlist: entry %s (%s, %s)\n", d.Match.Entry, d.Match.Matched, d.Match.Why)
	}
	if len(d.Verdicts) > 0 {
		fmt.Fprintln(w, "engines:")
		for _, v := range d.Verdicts {
			fmt.Fprintf(w, "  %s\n", policy.Contribution(v))
		}
	}
	if len(d.Reasons) > 0 {
		fmt.Fprintln(w, "reasons:")
		for _, r := range d.Reasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
	}
	if d.Quarantine != "" {
		fmt.Fprintf(w, "quarantine reason: %s\n", d.Quarantine)
	}
	for _, r := range d.Remove {
		fmt.Fprintf(w, "remove:   %s #%d: %s\n", r.Name, r.Index, r.Value)
	}
	if d.Subject != nil {
		fmt.Fprintf(w, "subject:  %s\n", *d.Subject)
	}
	for _, f := range d.Add {
		fmt.Fprintf(w, "add:      %s: %s\n", f.Name, strings.TrimSpace(f.Value))
	}
}
