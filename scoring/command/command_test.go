package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
)

func newClient(t testing.TB, cfg scoring.EngineConfig) *Client {
	t.Helper()
	cfg.Type = "command"
	if cfg.Name == "" {
		cfg.Name = "cmd"
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msg(raw []byte) *mail.Message { return testmsg.Parse(raw, mail.Envelope{}) }

func scanWithin(t *testing.T, c *Client, raw []byte, d time.Duration) (scoring.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	v, err := c.Scan(ctx, msg(raw))
	if took := time.Since(start); took > d+2*time.Second { // slack for a loaded machine
		t.Errorf("scan took %s, deadline %s", took, d)
	}
	return v, err
}

// script writes an executable /bin/sh script and returns its path. The script is the
// configured program: fpsafe itself never runs a shell.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "engine.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// clamdscanConfig writes a clamd.conf that points clamdscan at the test clamd.
func clamdscanConfig(t testing.TB, d *daemontest.ClamdDaemon) string {
	t.Helper()
	_, port, _ := strings.Cut(strings.TrimPrefix(d.Addr, "inet:127.0.0.1"), ":")
	return daemontest.WriteFile(t, t.TempDir(), "clamd.conf", "TCPSocket "+port+"\nTCPAddr 127.0.0.1\n")
}

func TestRealClamdscan(t *testing.T) {
	bin := daemontest.Require(t, "clamdscan")
	d := daemontest.Clamd(t)
	conf := clamdscanConfig(t, d)
	eicar := daemontest.EICARSignature + ".UNOFFICIAL"
	for name, argv := range map[string][]string{
		"stdin":  {bin, "--config-file=" + conf, "--no-summary", "-"},
		"{file}": {bin, "--config-file=" + conf, "--no-summary", "--stream", Placeholder},
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, scoring.EngineConfig{Command: argv}) // default exit codes and patterns: clamdscan's
			v, err := scanWithin(t, c, testmsg.Virus(), 10*time.Second)
			if err != nil || v.Outcome != scoring.Virus || len(v.Details) != 1 || v.Details[0] != eicar {
				t.Fatalf("EICAR: got %+v, %v; want virus %s", v, err, eicar)
			}
			v, err = scanWithin(t, c, testmsg.Ham(), 10*time.Second)
			if err != nil || v.Outcome != scoring.Clean || len(v.Details) != 0 {
				t.Fatalf("ham: got %+v, %v; want clean", v, err)
			}
			v, err = scanWithin(t, c, testmsg.Big(5<<20), 10*time.Second)
			if err != nil || v.Outcome != scoring.Clean {
				t.Fatalf("5 MiB: got %+v, %v; want clean", v, err)
			}
		})
	}
	t.Run("clamd down", func(t *testing.T) {
		c := newClient(t, scoring.EngineConfig{Command: []string{bin, "--config-file=" + conf, "--no-summary", "-"}})
		d.Stop()
		v, err := scanWithin(t, c, testmsg.Ham(), 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "exit status 2 means error") {
			t.Fatalf("clamd stopped: got %+v, %v; want the exit status 2 error", v, err)
		}
	})
}

// groupMembers lists the live (not zombie) processes in process group pgid.
func groupMembers(t *testing.T, pgid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			live = append(live, e.Name()+" "+s[:strings.LastIndexByte(s, ')')+1]+" "+f[0])
		}
	}
	return live
}

// A program that hangs, with a child that hangs too, is killed with its whole process
// group when the deadline passes: a timeout error, on time, and nothing left running.
func TestHangKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	c := newClient(t, scoring.EngineConfig{Command: []string{script(t, fmt.Sprintf(
		"echo $$ > %s\nsleep 60 &\nsleep 60 </dev/null | cat\n", pidFile))}})
	v, err := scanWithin(t, c, testmsg.Ham(), time.Second)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %+v, %v; want a deadline error", v, err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pgid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	var left []string
	for range 100 { // SIGKILL is immediate, but /proc may lag a moment
		if left = groupMembers(t, pgid); len(left) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("processes left in group %d: %q", pgid, left)
	}
	// The aggregator reports it as a timeout.
	cfg := scoring.EngineConfig{Name: "hang", Type: "command", Command: c.argv, Timeout: time.Second}.WithDefaults()
	agg := scoring.NewAggregator([]scoring.Configured{{Engine: c, Config: cfg}}, scoring.DefaultConfig(), nil)
	if vs := agg.Scan(context.Background(), msg(testmsg.Ham())); vs[0].Outcome != scoring.Timeout {
		t.Errorf("aggregator: %+v, want timeout", vs[0])
	}
}

// A program that floods its output is read to the end without keeping it all.
func TestFlood(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := newClient(t, scoring.EngineConfig{
		Command:   []string{script(t, "yes FOUND-NOT | head -c 100000000; echo score=1 >&2")},
		ExitCodes: map[string]string{"0": "clean"},
	})
	v, err := scanWithin(t, c, testmsg.Ham(), 20*time.Second)
	runtime.ReadMemStats(&after)
	if err != nil || v.Outcome != scoring.Clean {
		t.Fatalf("100 MB of output, exit 0: got %+v, %v; want clean", v, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 20<<20 {
		t.Errorf("allocated %d MB for 100 MB of output, want it bounded", grew>>20)
	}
	// An endless flood is killed at the deadline, like a hang.
	c = newClient(t, scoring.EngineConfig{Command: []string{"/usr/bin/yes"}})
	if _, err := scanWithin(t, c, testmsg.Ham(), time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("endless output: %v, want a deadline error", err)
	}
}

func TestCapped(t *testing.T) {
	w := &capped{limit: 10}
	for range 3 {
		if n, err := w.Write([]byte("0123456")); n != 7 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if w.String() != "0123456012" || w.dropped != 11 {
		t.Fatalf("kept %q, dropped %d", w.String(), w.dropped)
	}
}

func TestExitCodesAndPatterns(t *testing.T) {
	score := `score=([-0-9.]+)`
	for _, tc := range []struct {
		name    string
		script  string
		cfg     scoring.EngineConfig
		want    scoring.Outcome
		details string
		err     string
	}{
		{name: "unmapped exit code", script: "exit 7", err: "exit status 7 is not in exit_codes"},
		{name: "mapped error", script: "echo 'stdin: Can not connect. ERROR'; exit 2", err: "exit status 2 means error: stdin: Can not connect. ERROR"},
		{name: "killed by a signal", script: "kill -9 $$", err: "signal: killed"},
		{name: "virus from the pattern", script: "echo 'stdin: Win.Test.A FOUND'; echo 'stdin: Win.Test.B FOUND'; exit 1",
			want: scoring.Virus, details: "Win.Test.A|Win.Test.B"},
		{name: "detection beats an error status", script: "echo 'stdin: Win.Test.A FOUND'; exit 2", want: scoring.Virus, details: "Win.Test.A"},
		{name: "unmapped status, pattern decides", script: "echo 'JUNK DETECTED'; exit 9",
			cfg:  scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean"}, Patterns: []scoring.CommandPattern{{Match: "DETECTED", Outcome: "suspicious"}}},
			want: scoring.Suspicious},
		{name: "a clean pattern cannot clean an error", script: "echo all OK; exit 2",
			cfg: scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean", "2": "error"}, Patterns: []scoring.CommandPattern{{Match: "OK", Outcome: "clean"}}},
			err: "means error"},
		{name: "an error pattern beats exit 0", script: "echo 'license expired'; exit 0",
			cfg: scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean"}, Patterns: []scoring.CommandPattern{{Match: "expired", Outcome: "error"}}},
			err: "license expired"},
		{name: "score above threshold", script: "echo score=7.5",
			cfg:  scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean"}, ScorePattern: score, Threshold: 6},
			want: scoring.Spam, details: "score=7.5/6"},
		{name: "score below threshold", script: "echo score=-1.5",
			cfg:  scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean"}, ScorePattern: score},
			want: scoring.Clean, details: "score=-1.5/5"},
		{name: "no score", script: "echo nothing",
			cfg: scoring.EngineConfig{ExitCodes: map[string]string{"0": "clean"}, ScorePattern: score},
			err: "no score in the output"},
		{name: "program missing", cfg: scoring.EngineConfig{Command: []string{"/nonexistent/scanner"}}, err: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Command == nil {
				cfg.Command = []string{script(t, tc.script)}
			}
			c := newClient(t, cfg)
			v, err := scanWithin(t, c, testmsg.Ham(), 15*time.Second)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error saying %q", v, err, tc.err)
				}
				return
			}
			if err != nil || v.Outcome != tc.want || strings.Join(v.Details, "|") != tc.details {
				t.Fatalf("got %+v, %v; want %s %q", v, err, tc.want, tc.details)
			}
		})
	}
}

// With {file}, the program gets a 0600 temp file holding the message, removed afterwards,
// also when the program is killed at the deadline.
func TestFilePlaceholder(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	c := newClient(t, scoring.EngineConfig{
		Command: []string{script(t, fmt.Sprintf(`echo "$1 $(stat -c %%a "$1")" > %s
grep -q 'quarterly figures' "${2#--file=}" && exit 0
exit 1`, seen)), Placeholder, "--file=" + Placeholder},
		ExitCodes: map[string]string{"0": "clean", "1": "virus"},
	})
	for _, tc := range []struct {
		raw  []byte
		want scoring.Outcome
	}{{testmsg.Ham(), scoring.Clean}, {testmsg.Virus(), scoring.Virus}} {
		v, err := scanWithin(t, c, tc.raw, 15*time.Second)
		if err != nil || v.Outcome != tc.want {
			t.Fatalf("got %+v, %v; want %s", v, err, tc.want)
		}
		b, err := os.ReadFile(seen)
		if err != nil {
			t.Fatal(err)
		}
		path, mode, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if mode != "600" {
			t.Errorf("temp file mode %s, want 600", mode)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("temp file %s still there after the scan (%v)", path, err)
		}
	}
	// --file={file} got the same path: the ham matched through it.
	hang := newClient(t, scoring.EngineConfig{Command: []string{script(t, fmt.Sprintf("echo $1 > %s; sleep 60", seen)), Placeholder}})
	if _, err := scanWithin(t, hang, testmsg.Ham(), 500*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	b, _ := os.ReadFile(seen)
	if p := strings.TrimSpace(string(b)); p == "" {
		t.Error("hang: the script did not record its file")
	} else if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("temp file %s still there after a killed scan", p)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := scoring.EngineConfig{Name: "c", Type: "command", Command: []string{"/bin/true"}}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for want, mut := range map[string]func(*scoring.EngineConfig){
		"command is required":            func(e *scoring.EngineConfig) { e.Command = nil },
		"has no address":                 func(e *scoring.EngineConfig) { e.Address = "inet:127.0.0.1:1" },
		"not an exit status":             func(e *scoring.EngineConfig) { e.ExitCodes = map[string]string{"x": "clean"} },
		"want clean, virus":              func(e *scoring.EngineConfig) { e.ExitCodes = map[string]string{"0": "ok"} },
		"match is required":              func(e *scoring.EngineConfig) { e.Patterns = []scoring.CommandPattern{{Outcome: "virus"}} },
		"patterns[0]: match":             func(e *scoring.EngineConfig) { e.Patterns = []scoring.CommandPattern{{Match: "(", Outcome: "virus"}} },
		"outcome \"timeout\"":            func(e *scoring.EngineConfig) { e.Patterns = []scoring.CommandPattern{{Match: "x", Outcome: "timeout"}} },
		"needs a group":                  func(e *scoring.EngineConfig) { e.ScorePattern = "score=[0-9]+" },
		"{file} may only stand":          func(e *scoring.EngineConfig) { e.Command = []string{"{file}"} },
		"are for type icap, not command": func(e *scoring.EngineConfig) { e.Service = "/avscan" },
	} {
		e := ok
		mut(&e)
		if err := e.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	clamd := scoring.EngineConfig{Name: "c", Type: "clamd", Address: "inet:127.0.0.1:3310", Command: []string{"/bin/true"}}.WithDefaults()
	if err := clamd.Validate(); err == nil || !strings.Contains(err.Error(), "are for type command") {
		t.Errorf("command key on a clamd engine: %v", err)
	}
}
