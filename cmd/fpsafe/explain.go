package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fpsafe/fpsafe/internal/telemetry"
)

// cmdExplain prints, for a person, the decision records of one queue id: what happened to
// the message and why. LOGFILE defaults to the config's [log] decisions file.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlagSet("explain", stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: fpsafe explain [-config FILE] QUEUE-ID [LOGFILE]") }
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return 2
	}
	path := ""
	if len(pos) == 2 {
		path = pos[1]
	} else {
		cfg, err := LoadConfig(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "fpsafe explain:", err)
			return 2
		}
		if path = cfg.Log.Decisions; path == "" {
			fmt.Fprintf(stderr, "fpsafe explain: %s has no [log] decisions file; give LOGFILE\n", cfg.Source())
			return 2
		}
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe explain:", err)
		return 1
	}
	defer f.Close()
	recs, err := telemetry.Find(f, pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe explain:", err)
		return 1
	}
	if len(recs) == 0 {
		fmt.Fprintf(stderr, "fpsafe explain: no decision for queue id %s in %s\n", pos[0], path)
		return 1
	}
	for i, r := range recs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		r.Print(stdout)
	}
	return 0
}
