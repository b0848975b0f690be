package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
)

// replayMessage is one message of the replay corpus and what each config does with it.
type replayMessage struct {
	name string // file name in the eml folder
	raw  string
	a, b string // action under replayA (defaults) and replayB (tag 3, quarantine 6, min engines 1)
}

func synthetic(id, subject, fields, body string) string {
	return "Return-Path: <bounce-" + id + "@sender.example>\nFrom: Sender <" + id + "@sender.example>\nTo: Bob <bob@example.net>\n" +
		"Subject: " + subject + "\nMessage-ID: <" + id + "@replay.test>\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n" + fields + "\n" + body
}

// replayCorpus is testdata/messages plus synthetic messages whose X-FPSafe-Report or
// X-Spam-* fields record verdicts of various scores.
func replayCorpus(t *testing.T) []replayMessage {
	t.Helper()
	msgs := []replayMessage{
		{"rep-clean.eml", synthetic("rep-clean", "Lunch on Friday?", "X-FPSafe-Verdict: clean; score=1.2\nX-FPSafe-Report: clamd=clean 2ms; spamd=clean 1.2/5.0 n=1.2 w=1 80ms []\n", "See you there.\n"), "deliver", "deliver"},
		{"rep-four.eml", synthetic("rep-four", "Newsletter November", "X-FPSafe-Report: spamd=clean 4.0/5.0 n=4.0 w=1 80ms [HTML_MESSAGE]; rspamd=clean 12.0/15.0 n=4.0 w=1 9ms [MANY_INVISIBLE_PARTS(1.00)]\n", "News.\n"), "deliver", "tag"},
		{"rep-seven.eml", synthetic("rep-seven", "You have won", "X-FPSafe-Report: spamd=spam 7.0/5.0 n=7.0 w=1 90ms [BAYES_99,URIBL_BLACK]; rspamd=spam 21.0/15.0 n=7.0 w=1 12ms [BAYES_SPAM(5.10)]; clamd=clean 2ms; tag: score 7.0 >= tag_score 5\n", "Claim now.\n"), "tag", "quarantine"},
		{"rep-gtube.eml", synthetic("rep-gtube", "GTUBE", "X-FPSafe-Report: clamd=clean 1ms; spamd=spam 1000.0/5.0 n=20.0 w=1 118ms [GTUBE]; rspamd=spam 15.0/15.0 n=5.0 w=1 6ms [GTUBE(15.00)]; quarantine: score 12.5 >= quarantine_score 10 with 2 engines agreeing\n", "gtube\n"), "quarantine", "quarantine"},
		{"rep-eicar.eml", synthetic("rep-eicar", "Invoice attached", "X-FPSafe-Report: clamd=virus 3ms [Win.Test.EICAR_HDB-1]; spamd=clean 0.5/5.0 n=0.5 w=1 80ms\n", "attachment\n"), "quarantine", "quarantine"},
		{"rep-pua.eml", synthetic("rep-pua", "Statement (PDF)", "X-FPSafe-Report: clamd=suspicious 3ms [PUA.Pdf.Trojan.EmbeddedJavaScript-1]; spamd=clean 1.0/5.0 n=1.0 w=1 60ms\n", "pdf\n"), "tag", "tag"},
		{"xs-bayes.eml", synthetic("xs-bayes", "Cheap meds", "X-Spam-Flag: YES\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99,URIBL_BLACK\n\tautolearn=no version=4.0.0\n", "buy\n"), "tag", "quarantine"},
		{"xs-score.eml", synthetic("xs-score", "Webinar invitation", "X-Spam-Score: 3.5\n", "join us\n"), "deliver", "tag"},
		{"xs-flag.eml", synthetic("xs-flag", "Flagged upstream", "X-Spam-Flag: YES\n", "flag only\n"), "tag", "tag"},
		{"xs-ham.eml", synthetic("xs-ham", "Minutes of the board meeting", "X-Spam-Status: No, score=-2.1 required=5.0 tests=DKIM_VALID,DKIM_VALID_AU\n", "minutes\n"), "deliver", "deliver"},
		{"xs-rspamd.eml", synthetic("xs-rspamd", "Shipping notification", "X-Spam-Score: 10.5 / 15.0\nX-Spam-Flag: NO\n", "track it\n"), "deliver", "tag"},
		{"rep-failed.eml", synthetic("rep-failed", "Engines were down", "X-FPSafe-Report: clamd=error 0ms (dial unix /run/clamav/clamd.ctl: connect: no such file or directory); spamd=timeout 7200ms (no answer before the deadline); unscanned: no engine answered\n", "x\n"), "deliver", "deliver"},
		{"rep-noengines.eml", synthetic("rep-noengines", "No engines then", "X-FPSafe-Verdict: unscanned; score=0.0\nX-FPSafe-Report: unscanned: no engines configured\n", "x\n"), "deliver", "deliver"},
		{"from-line.eml", synthetic("from-line", "Letter", "X-Spam-Status: No, score=0.2 required=5.0\n", "Dear Bob,\n\nFrom the desk of the CEO: nothing new.\n>From an older quote\n\nregards\n"), "deliver", "deliver"},
		{"big.eml", synthetic("big", "Scanned documents", "X-Spam-Status: Yes, score=12.0 required=5.0 tests=BIG\n", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 32<<10)), "tag", "quarantine"},
		{"html-subject.eml", synthetic("html-subject", `=?utf-8?q?Rechnung_f=C3=BCr_M=C3=A4rz?= <b>urgent</b> & "now"`, "X-FPSafe-Report: spamd=clean 4.2/5.0 n=4.2 w=1 70ms\n", "invoice\n"), "deliver", "tag"},
	}
	for _, f := range []struct{ name, action string }{{"ham.eml", "deliver"}, {"gtube.eml", "deliver"}, {"forged-verdict.eml", "deliver"}, {"malformed-header.eml", "deliver"}} {
		b, err := os.ReadFile(filepath.Join("../../testdata/messages", f.name))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, replayMessage{f.name, string(b), f.action, f.action})
	}
	return msgs
}

func writeReplayFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaySources writes the corpus as a Maildir (new/ and cur/), an mboxrd file and a
// nested folder of .eml files.
func replaySources(t *testing.T, msgs []replayMessage) (maildir, mbox, eml string) {
	dir := t.TempDir()
	maildir, mbox, eml = filepath.Join(dir, "Maildir"), filepath.Join(dir, "inbox.mbox"), filepath.Join(dir, "eml")
	var mb strings.Builder
	for i, m := range msgs {
		sub := "new"
		name := fmt.Sprintf("17620%05d.M%dP1.host", i, i)
		if i%2 == 1 {
			sub, name = "cur", name+":2,S"
		}
		writeReplayFile(t, filepath.Join(maildir, sub, name), m.raw)
		writeReplayFile(t, filepath.Join(eml, fmt.Sprintf("dir%d", i%3), m.name), m.raw)
		fmt.Fprintf(&mb, "From MAILER-DAEMON Mon Nov  2 10:00:%02d 2026\n", i%60)
		for _, line := range strings.SplitAfter(m.raw, "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
				line = ">" + line // mboxrd escaping
			}
			mb.WriteString(line)
		}
		if !strings.HasSuffix(m.raw, "\n") {
			mb.WriteString("\n")
		}
		mb.WriteString("\n")
	}
	writeReplayFile(t, mbox, mb.String())
	return maildir, mbox, eml
}

// replayConfigs writes config A (the default policy) and B (tag 3, quarantine 6, one engine
// enough), both spooling bodies above 64 KiB to spool.
func replayConfigs(t *testing.T) (a, b, spool string) {
	dir := t.TempDir()
	spool = filepath.Join(dir, "spool")
	os.Mkdir(spool, 0o700)
	milter := fmt.Sprintf("[milter]\nspool_dir = %q\nspool_memory = \"64KiB\"\n", spool)
	a, b = filepath.Join(dir, "a.toml"), filepath.Join(dir, "strict.toml")
	writeReplayFile(t, a, milter)
	writeReplayFile(t, b, milter+"[policy]\ntag_score = 3.0\nquarantine_score = 6.0\nquarantine_min_engines = 1\n")
	return a, b, spool
}

type replayJSON struct {
	Path      string `json:"path"`
	Kind      string `json:"kind"`
	NoEngines bool   `json:"no_engines"`
	Configs   []struct {
		Name                 string         `json:"name"`
		TagScore             float64        `json:"tag_score"`
		QuarantineScore      float64        `json:"quarantine_score"`
		QuarantineMinEngines int            `json:"quarantine_min_engines"`
		Actions              map[string]int `json:"actions"`
		Verdicts             map[string]int `json:"verdicts"`
		Histogram            struct {
			Bins []struct {
				Lo      float64 `json:"lo"`
				Deliver int     `json:"deliver"`
			} `json:"bins"`
			Unscanned int `json:"unscanned"`
		} `json:"histogram"`
	} `json:"configs"`
	Messages    int            `json:"messages"`
	ParseErrors int            `json:"parse_errors"`
	Unreadable  int            `json:"unreadable"`
	Recorded    map[string]int `json:"recorded"`
	Rate        float64        `json:"messages_per_second"`
	Flagged     []struct {
		Source    string   `json:"source"`
		MessageID string   `json:"message_id"`
		Subject   string   `json:"subject"`
		Action    string   `json:"action"`
		Score     float64  `json:"score"`
		Reasons   []string `json:"reasons"`
	} `json:"flagged"`
	Changed []struct {
		Source    string `json:"source"`
		MessageID string `json:"message_id"`
		Subject   string `json:"subject"`
		From      struct {
			Action  string   `json:"action"`
			Score   float64  `json:"score"`
			Reasons []string `json:"reasons"`
		} `json:"from"`
		To struct {
			Action  string   `json:"action"`
			Verdict string   `json:"verdict"`
			Score   float64  `json:"score"`
			Reasons []string `json:"reasons"`
		} `json:"to"`
	} `json:"changed"`
	ChangeCounts []struct {
		From, To string
		Count    int
	} `json:"change_counts"`
	Problems []struct {
		Source, Problem string
		Decided         bool
	} `json:"problems"`
}

func messageID(raw string) string {
	for _, l := range strings.Split(raw, "\n") {
		if v, ok := strings.CutPrefix(l, "Message-ID: "); ok {
			return v
		}
	}
	return ""
}

// The same corpus as a Maildir, an mbox and a folder of .eml files, replayed with
// --no-engines under two configs: the counts and the changed messages are exactly those
// the recorded verdicts imply.
func TestReplayCompareNoEngines(t *testing.T) {
	msgs := replayCorpus(t)
	maildir, mbox, eml := replaySources(t, msgs)
	cfgA, cfgB, spool := replayConfigs(t)

	want := [2]map[string]int{{"deliver": 0, "tag": 0, "quarantine": 0}, {"deliver": 0, "tag": 0, "quarantine": 0}}
	var wantChanged, wantFlagged []string
	for _, m := range msgs {
		want[0][m.a]++
		want[1][m.b]++
		if m.a != m.b {
			wantChanged = append(wantChanged, messageID(m.raw)+" "+m.a+"→"+m.b)
		}
		if m.a != "deliver" {
			wantFlagged = append(wantFlagged, messageID(m.raw)+" "+m.a)
		}
	}
	sort.Strings(wantChanged)
	sort.Strings(wantFlagged)
	// what the corpus is built to show, spelled out
	if fmt.Sprint(want) != "[map[deliver:13 quarantine:2 tag:5] map[deliver:9 quarantine:5 tag:6]]" || len(wantChanged) != 7 {
		t.Fatalf("corpus: %v, %d changes", want, len(wantChanged))
	}

	for _, c := range []struct{ path, kind string }{{maildir, "maildir"}, {mbox, "mbox"}, {eml, "eml"}} {
		t.Run(c.kind, func(t *testing.T) {
			rc, out, errs := runCmd(t, "", "replay", "-config", cfgA, "--no-engines", "--compare", cfgB, "--format", "json", c.path)
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, errs)
			}
			var r replayJSON
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if r.Kind != c.kind || !r.NoEngines || r.Messages != len(msgs) || r.ParseErrors != 1 || r.Unreadable != 0 || len(r.Configs) != 2 {
				t.Fatalf("kind %s, %d messages, %d parse errors, %d unreadable, %d configs", r.Kind, r.Messages, r.ParseErrors, r.Unreadable, len(r.Configs))
			}
			for i := range 2 {
				if fmt.Sprint(r.Configs[i].Actions) != fmt.Sprint(want[i]) {
					t.Errorf("config %d: %v, want %v", i, r.Configs[i].Actions, want[i])
				}
			}
			if r.Configs[1].Name != cfgB || r.Configs[1].TagScore != 3 || r.Configs[1].QuarantineScore != 6 || r.Configs[1].QuarantineMinEngines != 1 {
				t.Errorf("config B: %+v", r.Configs[1])
			}
			if v := fmt.Sprint(r.Configs[0].Verdicts); v != "map[allowlisted:0 clean:8 quarantined:2 tagged:5 unscanned:5]" {
				t.Errorf("verdicts A: %s", v)
			}
			if v := fmt.Sprint(r.Recorded); v != "map[none:4 x-fpsafe-report:8 x-spam:8]" {
				t.Errorf("recorded: %s", v)
			}
			var changed, flagged []string
			for _, ch := range r.Changed {
				changed = append(changed, ch.MessageID+" "+ch.From.Action+"→"+ch.To.Action)
				if len(ch.To.Reasons) == 0 || ch.To.Verdict == "" {
					t.Errorf("change without reasons: %+v", ch)
				}
			}
			for _, f := range r.Flagged {
				flagged = append(flagged, f.MessageID+" "+f.Action)
			}
			sort.Strings(changed)
			sort.Strings(flagged)
			if fmt.Sprint(changed) != fmt.Sprint(wantChanged) {
				t.Errorf("changed:\n%v\nwant\n%v", changed, wantChanged)
			}
			if fmt.Sprint(flagged) != fmt.Sprint(wantFlagged) {
				t.Errorf("flagged:\n%v\nwant\n%v", flagged, wantFlagged)
			}
			if fmt.Sprint(r.ChangeCounts) != "[{deliver tag 4} {tag quarantine 3}]" {
				t.Errorf("change counts %v", r.ChangeCounts)
			}
			if len(r.Problems) != 1 || !r.Problems[0].Decided || !strings.Contains(r.Problems[0].Problem, "neither a field nor a continuation") {
				t.Errorf("problems %+v", r.Problems)
			}
			for _, ch := range r.Changed {
				if ch.MessageID == "<html-subject@replay.test>" && ch.Subject != `Rechnung für März <b>urgent</b> & "now"` {
					t.Errorf("subject %q", ch.Subject)
				}
				if ch.MessageID == "<xs-bayes@replay.test>" && (ch.To.Score != 7.3 || !strings.Contains(strings.Join(ch.To.Reasons, ";"), "quarantine: score 7.3 >= quarantine_score 6 with 1 engines agreeing")) {
					t.Errorf("xs-bayes: %+v", ch.To)
				}
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("spool files left behind: %v", left)
			}
		})
	}
}

func TestReplayText(t *testing.T) {
	maildir, _, _ := replaySources(t, replayCorpus(t))
	_, cfgB, _ := replayConfigs(t)
	rc, out, errs := runCmd(t, "", "replay", maildir, "--no-engines", "--compare", cfgB)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errs)
	}
	for _, want := range []string{
		"(maildir): 20 messages, --no-engines",
		"config A: embedded default config (tag_score 5, quarantine_score 10, quarantine_min_engines 2)",
		"config B: " + cfgB + " (tag_score 3, quarantine_score 6, quarantine_min_engines 1)",
		"  deliver            13       9\n  tag                 5       6\n  quarantine          2       5\n",
		"changed: 7 messages (deliver → tag 4, tag → quarantine 3)",
		"<xs-bayes@replay.test>",
		"B: quarantine: score 7.3 >= quarantine_score 6 with 1 engines agreeing",
		"tagged or quarantined under A: 7 messages",
		"msg/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errs, "replay: ") {
		t.Errorf("progress without --progress or a terminal: %s", errs)
	}
}

func TestReplayProgress(t *testing.T) {
	_, mbox, _ := replaySources(t, replayCorpus(t))
	rc, _, errs := runCmd(t, "", "replay", "--progress", "--no-engines", mbox)
	if rc != 0 || !strings.Contains(errs, "replay: 0/20 (0%) messages") || !strings.Contains(errs, "replay: 20/20 (100%) messages, ") || !strings.Contains(errs, " msg/s") {
		t.Fatalf("exit %d, stderr:\n%s", rc, errs)
	}
}

func TestReplayExitStatus(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"replay", filepath.Join(dir, "nonexistent")}, 1, "no such file"},
		{[]string{"replay", "--no-engines", "../../testdata/messages", "--html", filepath.Join(dir, "no", "such", "dir", "r.html")}, 1, "--html"},
		{[]string{"replay"}, 2, "usage"},
		{[]string{"replay", "a", "b"}, 2, "usage"},
		{[]string{"replay", "--format", "xml", "../../testdata/messages"}, 2, "usage"},
		{[]string{"replay", "--bogus", "../../testdata/messages"}, 2, "flag provided but not defined"},
		{[]string{"replay", "-config", "../../testdata/config/bad-01-typo.toml", "../../testdata/messages"}, 2, "quarantine_scroe"},
		{[]string{"replay", "--compare", "../../testdata/config/bad-07-thresholds.toml", "../../testdata/messages"}, 2, "bad-07-thresholds.toml"},
		{[]string{"replay", "--compare", filepath.Join(dir, "missing.toml"), "../../testdata/messages"}, 2, "missing.toml"},
	} {
		rc, _, errs := runCmd(t, "", c.args...)
		if rc != c.rc || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", c.args, rc, errs, c.rc, c.msg)
		}
	}
	// a single message file, and a folder without messages, complete
	for _, p := range []string{"../../testdata/messages/gtube.eml", dir} {
		if rc, out, errs := runCmd(t, "", "replay", "--no-engines", "--format", "json", p); rc != 0 || !strings.Contains(out, `"messages": `) {
			t.Errorf("%s: exit %d %s %s", p, rc, out, errs)
		}
	}
}

// The HTML report: the histogram with both configs' thresholds and the changed messages,
// checked as text and rendered by headless Chromium.
func TestReplayHTML(t *testing.T) {
	msgs := replayCorpus(t)
	_, _, eml := replaySources(t, msgs)
	cfgA, cfgB, _ := replayConfigs(t)
	report := filepath.Join(t.TempDir(), "report.html")
	rc, _, errs := runCmd(t, "", "replay", "-config", cfgA, "--compare", cfgB, "--no-engines", "--html", report, eml)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errs)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"<svg", "A tag_score 5", "A quarantine_score 10", "B tag_score 3", "B quarantine_score 6",
		"Messages whose action changes from A to B (7)", "&lt;xs-bayes@replay.test&gt;", "&lt;rep-four@replay.test&gt;", "&lt;big@replay.test&gt;",
		"Rechnung für März &lt;b&gt;urgent&lt;/b&gt; &amp; &#34;now&#34;", "header line 2 is neither a field"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, m := range msgs {
		id := strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(messageID(m.raw))
		if m.a != m.b && strings.Count(page, id) < 1 {
			t.Errorf("changed message %s not listed", id)
		}
	}
	for _, bad := range []string{"<script", "<link", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("report is not self-contained: %q", bad)
		}
	}

	shot := chromiumScreenshot(t, report)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if s := img.Bounds().Size(); s.X != 1200 || s.Y != 900 {
		t.Errorf("screenshot %v, want 1200x900", s)
	}
	// the bars were drawn: the deliver, tag and quarantine colours are on the page
	for name, c := range map[string][3]int{"deliver": {0x66, 0xbb, 0x6a}, "tag": {0xff, 0xa7, 0x26}, "quarantine": {0xe5, 0x39, 0x35}} {
		if n := countNear(img, c); n < 50 {
			t.Errorf("%d pixels of the %s colour in the screenshot", n, name)
		}
	}
}

func countNear(img image.Image, c [3]int) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if absDiff(int(r>>8), c[0]) <= 8 && absDiff(int(g>>8), c[1]) <= 8 && absDiff(int(bl>>8), c[2]) <= 8 {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b int) int {
	if a < b {
		return b - a
	}
	return a - b
}

// chromiumScreenshot renders page in headless Chromium (Debian's chromium) at 1200x900 and
// returns the PNG's path. It skips when chromium is missing, and fails under CI=true.
func chromiumScreenshot(t *testing.T, page string) string {
	t.Helper()
	bin := daemontest.Require(t, "chromium")
	dir := t.TempDir()
	shot := filepath.Join(dir, "shot.png")
	absPage, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+shot, "--window-size=1200,900", "file://"+absPage)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers chromium left behind
	}
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out.String())
	}
	if len(b) < 8<<10 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot of %d bytes, header %q", len(b), b[:min(8, len(b))])
	}
	return shot
}

// Without --no-engines the config's engines are asked. An engine that is down makes every
// message unscanned, and the report counts its errors.
func TestReplayEngineDown(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "down.toml")
	writeReplayFile(t, cfg, fmt.Sprintf("[[engine]]\nname = \"spamd\"\ntype = \"spamd\"\naddress = \"inet:127.0.0.1:%d\"\n", daemontest.FreePort(t)))
	rc, out, errs := runCmd(t, "", "replay", "-config", cfg, "--format", "json", "../../testdata/messages")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errs)
	}
	var r struct {
		Configs []struct {
			Actions  map[string]int            `json:"actions"`
			Verdicts map[string]int            `json:"verdicts"`
			Engines  map[string]map[string]int `json:"engines"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	c := r.Configs[0]
	if c.Actions["deliver"] != 4 || c.Verdicts["unscanned"] != 4 || c.Engines["spamd"]["error"] != 4 {
		t.Errorf("%+v", c)
	}
}

// With a real spamd: replaying with the engines and replaying with --no-engines the
// X-FPSafe-* fields that `fpsafe check` adds give the same decisions, and --compare shows
// the policy difference in both.
func TestReplayRealSpamd(t *testing.T) {
	sd := daemontest.StartSpamd(t)
	dir := t.TempDir()
	// generous deadlines: a loaded test machine must not turn a slow scan into "unscanned"
	milter := "[milter]\ndecision_timeout = \"120s\"\n"
	engine := fmt.Sprintf("[[engine]]\nname = \"spamassassin\"\ntype = \"spamd\"\naddress = %q\ntimeout = \"100s\"\n", sd.Addr)
	cfgA, cfgB := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	writeReplayFile(t, cfgA, milter+engine)
	writeReplayFile(t, cfgB, milter+"[policy]\ntag_score = 3.0\nquarantine_score = 6.0\nquarantine_min_engines = 1\n"+engine)

	live, recorded := filepath.Join(dir, "live"), filepath.Join(dir, "recorded")
	for _, name := range []string{"ham.eml", "gtube.eml"} {
		raw, err := os.ReadFile(filepath.Join("../../testdata/messages", name))
		if err != nil {
			t.Fatal(err)
		}
		writeReplayFile(t, filepath.Join(live, name), string(raw))
		rc, out, errs := runCmd(t, "", "check", "-config", cfgA, "--format", "text", filepath.Join(live, name))
		if rc != 0 {
			t.Fatalf("check %s: exit %d %s", name, rc, errs)
		}
		var added []string
		for _, l := range strings.Split(out, "\n") {
			if f, ok := strings.CutPrefix(l, "add:      "); ok && strings.HasPrefix(f, "X-FPSafe-") {
				added = append(added, f+"\n")
			}
		}
		if len(added) != 2 {
			t.Fatalf("check %s added %q", name, added)
		}
		writeReplayFile(t, filepath.Join(recorded, name), strings.Join(added, "")+string(raw))
	}

	decide := func(args ...string) replayJSON {
		t.Helper()
		rc, out, errs := runCmd(t, "", append([]string{"replay", "--format", "json", "-config", cfgA, "--compare", cfgB}, args...)...)
		if rc != 0 {
			t.Fatalf("%v: exit %d %s", args, rc, errs)
		}
		var r replayJSON
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	withEngines, fromHeaders := decide(live), decide("--no-engines", recorded)
	for _, r := range []replayJSON{withEngines, fromHeaders} {
		// GTUBE: spamassassin says spam, 1000/5 → 20; one engine can only tag under A, B quarantines
		if fmt.Sprint(r.Configs[0].Actions, r.Configs[1].Actions) != "map[deliver:1 quarantine:0 tag:1] map[deliver:1 quarantine:1 tag:0]" ||
			len(r.Changed) != 1 || r.Changed[0].MessageID != "<gtube-1@spam.example>" || r.Changed[0].From.Score != 20 || r.Changed[0].To.Action != "quarantine" {
			t.Errorf("no-engines=%v: %+v %+v changed %+v", r.NoEngines, r.Configs[0].Actions, r.Configs[1].Actions, r.Changed)
		}
	}
	if fmt.Sprint(fromHeaders.Recorded) != "map[none:0 x-fpsafe-report:2 x-spam:0]" {
		t.Errorf("recorded %v", fromHeaders.Recorded)
	}
}
