package replay

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

func pipeline(tag, quarantine float64, minEngines int) *policy.Pipeline {
	c := policy.DefaultConfig()
	c.TagScore, c.QuarantineScore, c.QuarantineMinEngines = tag, quarantine, minEngines
	return &policy.Pipeline{Config: c}
}

func configs(a, b *policy.Pipeline) []Config {
	cs := []Config{{Name: "a.toml", Pipeline: a, Scoring: scoring.DefaultConfig(), Timeout: time.Second}}
	if b != nil {
		cs = append(cs, Config{Name: "b.toml", Pipeline: b, Scoring: scoring.DefaultConfig(), Timeout: time.Second})
	}
	return cs
}

func msg(id, extra string) string {
	return fmt.Sprintf("From: Sender <s@example.org>\nTo: r@example.net\nSubject: message %s\nMessage-ID: <%s@test>\n%s\nbody of %s\n", id, id, extra, id)
}

// With --no-engines the recorded verdicts are decided under each config: a policy change
// shows as changed actions, an AV hit of a false-positive family is judged by the replayed
// config's suspicious_signatures, and a large body is spooled to disk and removed after.
func TestRunNoEnginesCompare(t *testing.T) {
	dir := t.TempDir()
	spool := t.TempDir()
	eml := filepath.Join(dir, "eml")
	write(t, filepath.Join(eml, "01.eml"), msg("clean", "X-Spam-Status: No, score=1.0\n"))
	write(t, filepath.Join(eml, "02.eml"), msg("four", "X-Spam-Score: 4.0\n"))
	write(t, filepath.Join(eml, "03.eml"), msg("seven", "X-FPSafe-Report: a=spam 7.0/5.0 n=7.0 w=1 1ms; b=spam 14.0/10.0 n=7.0 w=1 2ms\n"))
	write(t, filepath.Join(eml, "04.eml"), msg("pua", "X-FPSafe-Report: clamd=suspicious 1ms [PUA.Win.Test]; a=clean 0.0/5.0 n=0.0 w=1 1ms\n"))
	write(t, filepath.Join(eml, "05.eml"), msg("none", ""))
	write(t, filepath.Join(eml, "06.eml"), msg("big", "X-Spam-Status: Yes, score=12.0 required=5.0\n")+strings.Repeat("large body line\n", 20000))
	write(t, filepath.Join(eml, "07.eml"), "Subject: broken\nnot a header line\n\nX-Spam-Flag: YES\n")
	src, err := Open(eml)
	if err != nil {
		t.Fatal(err)
	}
	cs := configs(pipeline(5, 10, 2), pipeline(3, 6, 1))
	cs[1].Scoring.SuspiciousSignatures = nil // B trusts every AV hit: PUA quarantines
	var prog bytes.Buffer
	rep, err := Run(context.Background(), src, Options{Configs: cs, NoEngines: true, Workers: 3,
		SpoolDir: spool, SpoolMemory: 64 << 10, Progress: &prog, ProgressInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
	wantActions := []map[string]int{
		{"deliver": 4, "tag": 3, "quarantine": 0}, // clean, four, none, broken | seven, pua, big
		{"deliver": 3, "tag": 1, "quarantine": 3}, // clean, none, broken | four | seven, pua, big
	}
	for i, w := range wantActions {
		if fmt.Sprint(rep.Configs[i].Actions) != fmt.Sprint(w) {
			t.Errorf("config %d: actions %v, want %v", i, rep.Configs[i].Actions, w)
		}
	}
	if rep.Messages != 7 || rep.ParseErrors != 1 || rep.Configs[0].Verdicts["unscanned"] != 2 || fmt.Sprint(rep.Recorded) != "map[none:2 x-fpsafe-report:2 x-spam:3]" {
		t.Errorf("messages %d, parse errors %d, verdicts %v, recorded %v", rep.Messages, rep.ParseErrors, rep.Configs[0].Verdicts, rep.Recorded)
	}
	var changed []string
	for _, c := range rep.Changed {
		changed = append(changed, c.MessageID+" "+c.From.Action+"→"+c.To.Action)
	}
	if want := "[<four@test> deliver→tag <seven@test> tag→quarantine <pua@test> tag→quarantine <big@test> tag→quarantine]"; fmt.Sprint(changed) != want {
		t.Errorf("changed %v\nwant %s", changed, want)
	}
	if fmt.Sprint(rep.ChangeCounts) != "[{deliver tag 1} {tag quarantine 3}]" {
		t.Errorf("change counts %v", rep.ChangeCounts)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Source != "07.eml" || !rep.Problems[0].Decided {
		t.Errorf("problems %+v", rep.Problems)
	}
	// bins: clean 1.0, four 4.0, seven 7.0, pua 0.0, big 12.0
	h := rep.Configs[0].Histogram
	if len(h.Bins) != 30 || h.Unscanned != 2 || h.Bins[10].Deliver != 0 || h.Bins[10].Tag != 1 || h.Bins[11].Deliver != 1 || h.Bins[14].Deliver != 1 || h.Bins[17].Tag != 1 || h.Bins[22].Tag != 1 {
		t.Errorf("histogram %+v", h)
	}
	if lines := strings.Split(strings.TrimSpace(prog.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "replay: 0/7 (0%) messages") || !strings.HasPrefix(lines[1], "replay: 7/7 (100%) messages") {
		t.Errorf("progress:\n%s", prog.String())
	}
}

// countingEngine scores a message by the number in its subject, and counts its scans.
type countingEngine struct{ scans atomic.Int64 }

func (e *countingEngine) Name() string { return "fake" }

func (e *countingEngine) Scan(_ context.Context, m *mail.Message) (scoring.Verdict, error) {
	e.scans.Add(1)
	f := strings.Fields(m.Get("Subject"))
	s, _ := strconv.ParseFloat(f[len(f)-1], 64)
	out := scoring.Clean
	if s >= 5 {
		out = scoring.Spam
	}
	return scoring.Verdict{Outcome: out, Score: s, Threshold: 5}, nil
}

// Two configs with the same engines: each message is scanned once, and the second config
// decides on the first one's verdicts (so only the policy difference shows).
func TestRunSharedEngines(t *testing.T) {
	dir := t.TempDir()
	for i, s := range []string{"1", "4", "6", "11"} {
		write(t, filepath.Join(dir, fmt.Sprintf("%d.eml", i)), msg(s, ""))
	}
	eng := &countingEngine{}
	ec := scoring.EngineConfig{Name: "fake", Type: "spamd", Address: "inet:127.0.0.1:1"}.WithDefaults()
	agg := scoring.NewAggregator([]scoring.Configured{{Engine: eng, Config: ec}}, scoring.DefaultConfig(), nil)
	a, b := pipeline(5, 10, 2), pipeline(3, 6, 1)
	a.Engines, b.Engines = agg, agg
	cs := configs(a, b)
	cs[0].Engines, cs[1].Engines = []scoring.EngineConfig{ec}, []scoring.EngineConfig{ec}
	src, _ := Open(dir)
	rep, err := Run(context.Background(), src, Options{Configs: cs})
	if err != nil {
		t.Fatal(err)
	}
	if n := eng.scans.Load(); n != 4 {
		t.Errorf("%d scans for 4 messages", n)
	}
	if fmt.Sprint(rep.Configs[0].Actions, rep.Configs[1].Actions) != "map[deliver:2 quarantine:0 tag:2] map[deliver:1 quarantine:2 tag:1]" {
		t.Errorf("actions %v %v", rep.Configs[0].Actions, rep.Configs[1].Actions)
	}
	if fmt.Sprint(rep.Configs[0].Engines) != "map[fake:map[clean:2 spam:2]]" {
		t.Errorf("engines %v", rep.Configs[0].Engines)
	}
	// a third config with another engine set asks its own engines
	cs[1].Engines = nil
	eng.scans.Store(0)
	if _, err := Run(context.Background(), src, Options{Configs: cs}); err != nil || eng.scans.Load() != 8 {
		t.Errorf("%d scans, %v", eng.scans.Load(), err)
	}
}

// A file that disappears between listing and reading is reported, not decided; the run
// goes on.
func TestRunUnreadable(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.eml"), msg("a", ""))
	write(t, filepath.Join(dir, "b.eml"), msg("b", ""))
	src, _ := Open(dir)
	os.Remove(filepath.Join(dir, "a.eml"))
	rep, err := Run(context.Background(), src, Options{Configs: configs(pipeline(5, 10, 2), nil), NoEngines: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != 1 || rep.Unreadable != 1 || len(rep.Problems) != 1 || rep.Problems[0].Decided || !strings.Contains(rep.Problems[0].Problem, "no such file") {
		t.Errorf("%+v", rep)
	}
}

// The HTML page is self-contained, escapes the messages and draws both configs' thresholds.
func TestWriteHTML(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "x.eml"), "Subject: <script>alert(1)</script> & co\nMessage-ID: <x@test>\nX-Spam-Score: 4\n\n")
	src, _ := Open(dir)
	rep, err := Run(context.Background(), src, Options{Configs: configs(pipeline(5, 10, 2), pipeline(3, 6, 1)), NoEngines: true})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<svg", "A tag_score 5", "A quarantine_score 10", "B tag_score 3", "B quarantine_score 6",
		"&lt;x@test&gt;", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co", `class="threshold tag b"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
}

// BenchmarkRunNoEngines replays a Maildir of 500 small messages, half with recorded verdicts.
func BenchmarkRunNoEngines(b *testing.B) {
	dir := b.TempDir()
	for i := range 500 {
		extra := ""
		if i%2 == 0 {
			extra = fmt.Sprintf("X-FPSafe-Report: clamd=clean 2ms; spamd=spam %d.0/5.0 n=%d.0 w=1 80ms [BAYES_99]; rspamd=clean 3.0/15.0 n=1.0 w=1 9ms\n", i%20, i%20)
		}
		p := filepath.Join(dir, "cur", fmt.Sprintf("%d.host:2,S", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(msg(strconv.Itoa(i), extra)+strings.Repeat("a line of body text\n", 100)), 0o644)
	}
	src, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	opt := Options{Configs: configs(pipeline(5, 10, 2), pipeline(3, 6, 1)), NoEngines: true}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Run(context.Background(), src, opt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
