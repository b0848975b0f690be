package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/fpsafe/fpsafe/internal/replay"
)

// cmdReplay runs stored mail (a Maildir, an mbox, a folder of .eml files or one message)
// through the pipeline and reports what would be delivered, tagged and quarantined; with
// --compare, which messages a second config would treat differently. Exit 0 when the run
// completed, 2 on bad flags or config, 1 when PATH (or the --html file) cannot be read or written.
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlagSet("replay", stderr)
	compare := fs.String("compare", "", "a second config: list the messages whose action would change")
	noEngines := fs.Bool("no-engines", false, "ask no engine: reuse the verdicts in each message's X-FPSafe-Report or X-Spam-* fields")
	format := fs.String("format", "text", "output format: text or json")
	htmlPath := fs.String("html", "", "also write a self-contained HTML report (score histogram, thresholds, messages) to this file")
	progress := fs.Bool("progress", false, "print progress to stderr even when it is not a terminal")
	workers := fs.Int("workers", 0, "messages decided in parallel (default: the number of CPUs)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fpsafe replay [-config FILE] [--compare OTHER.toml] [--no-engines] [--format text|json] [--html REPORT.html] [--progress] [--workers N] PATH")
		fmt.Fprintln(stderr, "PATH is a Maildir, an mbox file, a directory of .eml files or one message file.")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || (*format != "text" && *format != "json") || *workers < 0 {
		fs.Usage()
		return 2
	}

	paths := []string{*cfgPath}
	if *compare != "" {
		paths = append(paths, *compare)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var configs []replay.Config
	var first *Config
	for _, p := range paths {
		cfg, err := LoadConfig(p)
		if err != nil {
			fmt.Fprintln(stderr, "fpsafe replay:", err)
			return 2
		}
		log := newLogger(LogConfig{Format: cfg.Log.Format, Level: "error"}, stderr)
		store, err := openStore(ctx, cfg.Allowlist, log)
		if err != nil {
			fmt.Fprintln(stderr, "fpsafe replay:", err)
			return 2
		}
		pipe, err := buildPipeline(cfg, log, store)
		if err != nil {
			fmt.Fprintln(stderr, "fpsafe replay:", err)
			return 2
		}
		if first == nil {
			first = cfg
		}
		configs = append(configs, replay.Config{Name: cfg.Source(), Pipeline: pipe, Scoring: cfg.Scoring,
			Engines: cfg.Engines, Timeout: cfg.Milter.DecisionTimeout})
	}

	src, err := replay.Open(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe replay:", err)
		return 1
	}
	var htmlFile *os.File
	if *htmlPath != "" {
		if htmlFile, err = os.Create(*htmlPath); err != nil {
			fmt.Fprintln(stderr, "fpsafe replay: --html:", err)
			return 1
		}
		defer htmlFile.Close()
	}

	opt := replay.Options{Configs: configs, NoEngines: *noEngines, Workers: *workers,
		SpoolDir: first.Milter.SpoolDir, SpoolMemory: int64(first.Milter.SpoolMemory)}
	tty := isTerminal(stderr)
	if *progress || tty {
		opt.Progress, opt.ProgressTTY = stderr, tty
	}
	rep, runErr := replay.Run(ctx, src, opt)
	if rep == nil {
		fmt.Fprintln(stderr, "fpsafe replay:", runErr)
		return 1
	}
	if *format == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe replay:", err)
		return 1
	}
	if htmlFile != nil {
		if err := errors.Join(rep.WriteHTML(htmlFile), htmlFile.Close()); err != nil {
			fmt.Fprintln(stderr, "fpsafe replay: --html:", err)
			return 1
		}
		fmt.Fprintf(stderr, "fpsafe replay: wrote %s\n", *htmlPath)
	}
	if rep.Unreadable > 0 {
		fmt.Fprintf(stderr, "fpsafe replay: %d files could not be read (listed under problems)\n", rep.Unreadable)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "fpsafe replay: stopped after %d messages: %v\n", rep.Messages+rep.Unreadable, runErr)
		return 1
	}
	return 0
}

// isTerminal reports whether w is a terminal (a character device), without x/term.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
