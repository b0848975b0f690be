// Package command is fpsafe's engine that runs a program per message: a scanner's
// command-line client (clamdscan, savscan, ...) or a site's own script. The program runs
// without a shell, in its own process group, with the message on standard input or in a
// 0600 temp file; when the deadline passes the whole group is killed. Its exit status and
// output, read bounded, are mapped to an outcome by the engine's exit_codes, patterns and
// score_pattern. Anything that is not a mapped answer is an error, never Clean.
package command

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

const (
	// Placeholder in an argument stands for the path of the temp file holding the message.
	Placeholder = "{file}"
	// DefaultMaxOutput is how much of the program's output (stdout and stderr together) is
	// kept for the patterns; the rest is read and dropped.
	DefaultMaxOutput = 64 << 10
	// DefaultThreshold is the native spam threshold when score_pattern has no threshold.
	DefaultThreshold = scoring.Scale
	// waitDelay bounds how long output pipes held open by an escaped descendant keep a
	// scan waiting after the program itself has ended.
	waitDelay = 500 * time.Millisecond
	// maxDetails and maxDetail bound the details taken from the output.
	maxDetails = 16
	maxDetail  = 200
)

// DefaultExitCodes and DefaultPatterns suit clamdscan ("clamdscan --no-summary -"): exit
// status 0 is clean, 1 a virus, 2 an error, and each "NAME: SIGNATURE FOUND" line names a
// virus. They apply when exit_codes is not set; DefaultPatterns only when patterns is
// not set either.
var (
	DefaultExitCodes = map[string]string{"0": "clean", "1": "virus", "2": "error"}
	DefaultPatterns  = []scoring.CommandPattern{
		{Match: `(?m) FOUND$`, Outcome: "virus", Detail: `(?m)^.*?: (.+) FOUND$`},
	}
)

type pattern struct {
	match, detail *regexp.Regexp
	outcome       scoring.Outcome
}

// Client runs one configured command per scan. It holds no mutable state.
type Client struct {
	name      string
	argv      []string
	file      bool // an argument holds Placeholder
	exit      map[int]scoring.Outcome
	patterns  []pattern
	score     *regexp.Regexp
	threshold float64
	maxOutput int
	timeout   time.Duration
}

// New builds a client for cfg (see scoring.EngineConfig's command fields).
func New(cfg scoring.EngineConfig) (*Client, error) {
	if cfg.Name == "" {
		cfg.Name = "command"
	}
	cfg.Type = "command"
	if err := cfg.WithDefaults().Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		name:      cfg.Name,
		argv:      append([]string(nil), cfg.Command...),
		exit:      map[int]scoring.Outcome{},
		threshold: cmp.Or(cfg.Threshold, DefaultThreshold),
		maxOutput: int(cmp.Or(cfg.MaxOutput, DefaultMaxOutput)),
		timeout:   cmp.Or(cfg.Timeout, scoring.Defaults["command"].Timeout),
	}
	codes, pats := cfg.ExitCodes, cfg.Patterns
	if codes == nil {
		codes = DefaultExitCodes
		if pats == nil {
			pats = DefaultPatterns
		}
	}
	for k, v := range codes {
		n, _ := strconv.Atoi(k) // Validate checked it
		c.exit[n] = scoring.Outcome(v)
	}
	for _, p := range pats {
		cp := pattern{match: regexp.MustCompile(p.Match), outcome: scoring.Outcome(p.Outcome)}
		if p.Detail != "" {
			cp.detail = regexp.MustCompile(p.Detail)
		}
		c.patterns = append(c.patterns, cp)
	}
	if cfg.ScorePattern != "" {
		c.score = regexp.MustCompile(cfg.ScorePattern)
	}
	for _, a := range c.argv[1:] {
		if strings.Contains(a, Placeholder) {
			c.file = true
		}
	}
	return c, nil
}

// Name is the engine's configured name; it implements scoring.Engine.
func (c *Client) Name() string { return c.name }

// Ping checks that the program exists and is executable: the circuit breaker's probe.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := exec.LookPath(c.argv[0]); err != nil {
		return fmt.Errorf("command %s: %w", c.argv[0], err)
	}
	return nil
}

// Scan runs the command on m and maps what it did to a verdict; it implements
// scoring.Engine.
func (c *Client) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	argv := c.argv
	var stdin io.Reader
	if c.file {
		path, err := writeTemp(m)
		if err != nil {
			return scoring.Verdict{}, fmt.Errorf("command %s: %w", c.argv[0], err)
		}
		defer os.Remove(path)
		argv = make([]string, len(c.argv))
		for i, a := range c.argv {
			argv[i] = strings.ReplaceAll(a, Placeholder, path)
		}
	} else {
		r, err := m.Open()
		if err != nil {
			return scoring.Verdict{}, fmt.Errorf("command %s: open message: %w", c.argv[0], err)
		}
		defer r.Close()
		stdin = r
	}
	out, code, err := run(ctx, argv, stdin, c.maxOutput)
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("command %s: %w", c.argv[0], err)
	}
	v, err := c.judge(code, out)
	if err != nil {
		return scoring.Verdict{}, fmt.Errorf("command %s: %w", c.argv[0], err)
	}
	return v, nil
}

// run starts argv in a new process group and waits for it. When ctx ends, the whole group
// is killed; so is whatever is left of it after a normal end. It returns the first max
// bytes of the output and the exit status.
func run(ctx context.Context, argv []string, stdin io.Reader, max int) (string, int, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	cmd.Env = append(os.Environ(), "LC_ALL=C") // messages to match in one language
	out := &capped{limit: max}
	cmd.Stdout, cmd.Stderr = out, out // one pipe: exec writes with one goroutine
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	pid := cmd.Process.Pid
	err := cmd.Wait()
	syscall.Kill(-pid, syscall.SIGKILL) // descendants left behind in the group
	if cerr := ctx.Err(); cerr != nil {
		return "", 0, fmt.Errorf("process group %d killed after %s: %w", pid, time.Since(start).Round(time.Millisecond), cerr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil || errors.Is(err, exec.ErrWaitDelay):
	case errors.As(err, &ee):
		if ee.ExitCode() < 0 {
			return "", 0, fmt.Errorf("%s: %s", ee.ProcessState, firstLine(out.String()))
		}
	default:
		return "", 0, err
	}
	return out.String(), cmd.ProcessState.ExitCode(), nil
}

// judge maps an exit status and output to a verdict. The first pattern whose match
// matches gives the outcome, except that a pattern cannot make clean a run whose exit
// status says otherwise; without a matching pattern the exit status decides, and an
// unmapped status is an error. A clean run whose score (score_pattern) reaches the
// threshold is spam; a clean run whose output has no score is an error.
func (c *Client) judge(code int, out string) (scoring.Verdict, error) {
	exitOutcome, mapped := c.exit[code]
	outcome := exitOutcome
	var pat *pattern
	for i := range c.patterns {
		if c.patterns[i].match.MatchString(out) {
			pat = &c.patterns[i]
			break
		}
	}
	if pat != nil && (pat.outcome != scoring.Clean || mapped && exitOutcome == scoring.Clean) {
		outcome, mapped = pat.outcome, true
	}
	if !mapped {
		return scoring.Verdict{}, fmt.Errorf("exit status %d is not in exit_codes: %s", code, firstLine(out))
	}
	if outcome == scoring.Error {
		return scoring.Verdict{}, fmt.Errorf("exit status %d means error: %s", code, firstLine(out))
	}
	v := scoring.Verdict{Outcome: outcome}
	if pat != nil && pat.outcome == outcome && pat.detail != nil {
		for _, m := range pat.detail.FindAllStringSubmatch(out, maxDetails) {
			d := m[0]
			if len(m) > 1 {
				d = m[1]
			}
			v.Details = addDetail(v.Details, d)
		}
	}
	if c.score != nil {
		m := c.score.FindStringSubmatch(out)
		var score float64
		var err error
		if m != nil {
			score, err = strconv.ParseFloat(strings.TrimSpace(m[1]), 64)
		}
		if m == nil || err != nil {
			if outcome == scoring.Clean {
				return scoring.Verdict{}, fmt.Errorf("exit status %d but no score in the output: %s", code, firstLine(out))
			}
		} else {
			v.Score, v.Threshold = score, c.threshold
			v.Normalized = scoring.Normalize(score, c.threshold)
			if outcome == scoring.Clean && score >= c.threshold {
				v.Outcome = scoring.Spam
			}
			v.Details = append(v.Details, fmt.Sprintf("score=%g/%g", score, c.threshold))
		}
	}
	return v, nil
}

// writeTemp writes m to a new 0600 temp file and returns its path.
func writeTemp(m *mail.Message) (string, error) {
	f, err := os.CreateTemp("", "fpsafe-*.eml") // CreateTemp makes it 0600
	if err != nil {
		return "", err
	}
	r, err := m.Open()
	if err == nil {
		_, err = io.Copy(f, r)
		r.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write message to %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// capped keeps the first limit bytes written and drops the rest, always reporting
// success, so that a program that floods its output never blocks on a full pipe.
type capped struct {
	mu      sync.Mutex
	b       []byte
	limit   int
	dropped int64
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.limit - len(w.b)
	if room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	w.dropped += int64(len(p) - max(min(room, len(p)), 0))
	return len(p), nil
}

func (w *capped) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

// firstLine is the first non-empty output line, shortened, for error messages.
func firstLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return clip(l)
		}
	}
	return "(no output)"
}

func addDetail(ds []string, d string) []string {
	d = clip(strings.TrimSpace(d))
	if d == "" || len(ds) >= maxDetails {
		return ds
	}
	for _, x := range ds {
		if x == d {
			return ds
		}
	}
	return append(ds, d)
}

// clip makes program output safe for a header: printable, valid UTF-8, bounded.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxDetail {
		s = s[:maxDetail]
	}
	return strings.ToValidUTF8(s, "?")
}
