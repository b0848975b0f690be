package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

func av(name string, o scoring.Outcome, details ...string) scoring.Verdict {
	return scoring.Verdict{Engine: name, Type: "clamd", Outcome: o, Weight: 1, Details: details}
}

func spam(name string, o scoring.Outcome, score, threshold float64) scoring.Verdict {
	return scoring.Verdict{Engine: name, Type: "spamd", Outcome: o, Scored: o.Answered(), Score: score,
		Threshold: threshold, Normalized: scoring.Normalize(score, threshold), Weight: 1}
}

func failed(name string, o scoring.Outcome) scoring.Verdict {
	return scoring.Verdict{Engine: name, Outcome: o, Weight: 1, Reason: "connection refused"}
}

var authed = &allowlist.Match{Entry: "sec-filings", Matched: "domain sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}
var spoofed = &allowlist.Match{Entry: "sec-filings", Matched: "domain sec.gov", Require: "dmarc", Authenticated: false, Why: "dmarc=fail"}

func TestDecide(t *testing.T) {
	cfg := DefaultConfig()
	tests := []struct {
		name    string
		in      Input
		action  Action
		verdict Verdict
		reason  string // a substring one of the reasons must contain
	}{
		{"no engines", Input{}, Deliver, VerdictUnscanned, "no engines configured"},
		{"all engines failed", Input{Verdicts: []scoring.Verdict{failed("clamd", scoring.Error), failed("spamd", scoring.Timeout)}},
			Deliver, VerdictUnscanned, "no engine answered"},
		{"all skipped", Input{Verdicts: []scoring.Verdict{failed("spamd", scoring.Skipped)}}, Deliver, VerdictUnscanned, "spamd(skipped"},
		{"pipeline failure", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Virus, "Eicar")}, Failure: "decision overran 8s"},
			Deliver, VerdictUnscanned, "decision overran"},
		{"ham", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Clean), spam("spamd", scoring.Clean, 0.5, 5)}}, Deliver, VerdictClean, ""},
		{"virus quarantines", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Virus, "Win.Test.EICAR_HDB-1"), spam("spamd", scoring.Clean, 0, 5)}},
			Quarantine, VerdictQuarantined, "virus clamd: Win.Test.EICAR_HDB-1"},
		{"suspicious only tags", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Suspicious, "PUA.Win.Packer")}}, Tag, VerdictTagged, "suspicious"},
		{"one engine spam tags", Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 1000, 5)}}, Tag, VerdictTagged, "only 1 of quarantine_min_engines 2"},
		{"one engine spam among clean tags", Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 6, 5), spam("rspamd", scoring.Clean, 1, 15)}},
			Tag, VerdictTagged, "engine(s) say spam"},
		{"two engines agree quarantines", Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 1000, 5), spam("rspamd", scoring.Spam, 15, 15)}},
			Quarantine, VerdictQuarantined, "2 engines agreeing"},
		{"two agree but score low tags", Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 5.5, 5), spam("rspamd", scoring.Spam, 16, 15)}},
			Tag, VerdictTagged, "tag_score"},
		{"other engine failed: one alone can only tag", Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 1000, 5), failed("rspamd", scoring.Timeout)}},
			Tag, VerdictTagged, "not scanned by rspamd(timeout"},
		{"allowlisted clean", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Clean)}, Match: authed}, Deliver, VerdictAllowlisted, "allowlisted by entry sec-filings"},
		{"allowlisted virus is tagged, never held", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Virus, "Eicar")}, Match: authed},
			Tag, VerdictAllowlisted, "quarantine bypassed"},
		{"spoofed allowlisted sender gets no bypass", Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Virus, "Eicar")}, Match: spoofed},
			Quarantine, VerdictQuarantined, "entry sec-filings matched domain sec.gov but dmarc=fail"},
		{"allowlisted but unscanned", Input{Verdicts: []scoring.Verdict{failed("clamd", scoring.Error)}, Match: authed}, Deliver, VerdictUnscanned, "no engine answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in, cfg)
			if d.Action != tt.action || d.Verdict != tt.verdict {
				t.Fatalf("got %s/%s, want %s/%s; reasons %q", d.Action, d.Verdict, tt.action, tt.verdict, d.Reasons)
			}
			if tt.reason != "" && !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, tt.reason) }) {
				t.Errorf("no reason contains %q: %q", tt.reason, d.Reasons)
			}
			checkHeaders(t, d)
		})
	}
}

// checkHeaders asserts the header contract: verdict and report always; X-Spam-Flag only on
// tag and quarantine (never on unscanned); a quarantine reason exactly on quarantine.
func checkHeaders(t *testing.T, d Decision) {
	t.Helper()
	got := map[string]string{}
	for _, f := range d.Add {
		got[f.Name] = f.Value
	}
	if !strings.HasPrefix(got[HeaderVerdict], string(d.Verdict)+"; score=") {
		t.Errorf("X-FPSafe-Verdict = %q, want verdict %s", got[HeaderVerdict], d.Verdict)
	}
	if got[HeaderReport] == "" {
		t.Error("no X-FPSafe-Report")
	}
	_, flagged := got["X-Spam-Flag"]
	if want := d.Action != Deliver; flagged != want {
		t.Errorf("X-Spam-Flag present = %v, want %v (action %s)", flagged, want, d.Action)
	}
	if d.Verdict == VerdictUnscanned && flagged {
		t.Error("unscanned message flagged as spam")
	}
	if (d.Action == Quarantine) != (d.Quarantine != "") {
		t.Errorf("quarantine reason %q with action %s", d.Quarantine, d.Action)
	}
}

func TestStripForgedHeaders(t *testing.T) {
	h := []mail.Field{
		{Name: "X-Spam-Flag", Value: " NO"},
		{Name: "Subject", Value: " hi"},
		{Name: "x-fpsafe-verdict", Value: " clean; score=0.0"},
		{Name: "X-Spam-Flag", Value: " NO"},
		{Name: "X-Spam", Value: " no"},
		{Name: "X-Spamfilter", Value: " kept"},
	}
	d := Decide(Input{Header: h}, DefaultConfig())
	want := []HeaderRef{{"X-Spam", 1, "no"}, {"X-Spam-Flag", 2, "NO"}, {"x-fpsafe-verdict", 1, "clean; score=0.0"}, {"X-Spam-Flag", 1, "NO"}}
	if !slices.Equal(d.Remove, want) {
		t.Fatalf("removals %v, want %v", d.Remove, want)
	}
}

func TestSubjectPrefix(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SubjectPrefix = "[SPAM]"
	tagged := Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Spam, 1000, 5)}, Header: []mail.Field{{Name: "Subject", Value: " Cheap pills"}}}
	if d := Decide(tagged, cfg); d.Subject == nil || *d.Subject != "[SPAM] Cheap pills" {
		t.Fatalf("subject %v", d.Subject)
	}
	tagged.Header[0].Value = " [SPAM] Cheap pills"
	if d := Decide(tagged, cfg); d.Subject != nil {
		t.Fatalf("prefix added twice: %q", *d.Subject)
	}
	ham := Input{Verdicts: []scoring.Verdict{spam("spamd", scoring.Clean, 0, 5)}, Header: tagged.Header}
	if d := Decide(ham, cfg); d.Subject != nil {
		t.Fatalf("clean message got a subject change %q", *d.Subject)
	}
}

// TestDecideProperties: for random verdicts, identities and allowlist matches, the action
// is one of the three, an authenticated allowlisted sender is never quarantined, and an
// unscanned message is never flagged as spam.
func TestDecideProperties(t *testing.T) {
	outcomes := []scoring.Outcome{scoring.Clean, scoring.Spam, scoring.Suspicious, scoring.Virus, scoring.Error, scoring.Timeout, scoring.Skipped}
	prop := func(seed uint64) bool {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var in Input
		for i := range r.IntN(5) {
			o := outcomes[r.IntN(len(outcomes))]
			in.Verdicts = append(in.Verdicts, scoring.Verdict{
				Engine: "e" + string(rune('a'+i)), Outcome: o, Scored: o.Answered() && r.IntN(2) == 0,
				Score: r.Float64()*60 - 10, Threshold: 5, Normalized: r.Float64()*30 - 10,
				Weight: float64(r.IntN(3)), Details: []string{"Sig" + string(rune('A'+r.IntN(3)))},
			})
		}
		switch r.IntN(3) {
		case 1:
			in.Match = &allowlist.Match{Entry: "x", Authenticated: true, Why: "dkim=pass"}
		case 2:
			in.Match = &allowlist.Match{Entry: "x", Authenticated: false, Why: "dkim=fail"}
		}
		if r.IntN(10) == 0 {
			in.Failure = "boom"
		}
		cfg := DefaultConfig()
		cfg.QuarantineMinEngines = 1 + r.IntN(3)
		d := Decide(in, cfg)
		if d.Action != Deliver && d.Action != Tag && d.Action != Quarantine {
			return false
		}
		if in.Match != nil && in.Match.Authenticated && d.Action == Quarantine {
			return false
		}
		for _, f := range d.Add {
			if f.Name == "X-Spam-Flag" && d.Verdict == VerdictUnscanned {
				return false
			}
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 20000}); err != nil {
		t.Fatal(err)
	}
}

func TestDecisionJSON(t *testing.T) {
	d := Decide(Input{Verdicts: []scoring.Verdict{av("clamd", scoring.Clean)}}, DefaultConfig())
	d.Verdicts[0].Duration = 1500 * time.Microsecond
	b, err := d.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"action":"deliver"`, `"verdict":"clean"`, `"score":0`, `"verdicts":[{"engine":"clamd","outcome":"clean"`, `"ms":1.5`,
		`"allowlist":null`, `"identity":{`, `"reasons":[]`, `"headers_added":[{`, `"headers_removed":[]`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

// Authentication-Results fields claiming fpsafe's authserv-id are forged and removed;
// other hosts' results stay; fpsafe's own is added first.
func TestForgedAuthResults(t *testing.T) {
	h := []mail.Field{
		{Name: "Authentication-Results", Value: " mx.ourcorp.example; dkim=pass header.d=sec.gov"},
		{Name: "Authentication-Results", Value: " relay.partner.example; spf=pass"},
		{Name: "authentication-results", Value: " MX.OURCORP.EXAMPLE 1 (forged); dmarc=pass"},
		{Name: "Authentication-Results", Value: " mx.ourcorp.example.evil; dmarc=pass"},
	}
	d := Decide(Input{Header: h, AuthservID: "mx.ourcorp.example", AuthResults: "mx.ourcorp.example; dmarc=fail header.from=sec.gov"}, DefaultConfig())
	want := []HeaderRef{{"authentication-results", 3, "MX.OURCORP.EXAMPLE 1 (forged); dmarc=pass"}, {"Authentication-Results", 1, "mx.ourcorp.example; dkim=pass header.d=sec.gov"}}
	if !slices.Equal(d.Remove, want) {
		t.Fatalf("removed %v, want %v", d.Remove, want)
	}
	if d.Add[0].Name != HeaderAuthResults || d.Add[0].Value != "mx.ourcorp.example; dmarc=fail header.from=sec.gov" {
		t.Fatalf("first added field %v", d.Add[0])
	}
}

// Observe mode computes the same decision but enforces nothing: only X-FPSafe-* fields are
// written, incoming X-Spam-* fields stay, no subject change, no quarantine.
func TestObserveMode(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Mode, cfg.SubjectPrefix = ModeObserve, "[SPAM]"
	in := Input{
		Verdicts: []scoring.Verdict{av("clamd", scoring.Virus, "Eicar")},
		Header:   []mail.Field{{Name: "Subject", Value: " hi"}, {Name: "X-Spam-Flag", Value: " NO"}, {Name: "X-FPSafe-Verdict", Value: " clean"}},
	}
	d := Decide(in, cfg)
	if d.Action != Quarantine || d.Enforced() || !d.Observe || d.Subject != nil {
		t.Fatalf("decision %+v", d)
	}
	if len(d.Remove) != 1 || d.Remove[0].Name != "X-FPSafe-Verdict" {
		t.Fatalf("observe mode removed %v", d.Remove)
	}
	for _, f := range d.Add {
		if !strings.HasPrefix(f.Name, "X-FPSafe-") {
			t.Errorf("observe mode added %s", f.Name)
		}
	}
	if v := d.Add[0].Value; v != "quarantined; score=0.0; mode=observe" {
		t.Errorf("verdict field %q", v)
	}
	if !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, "observe mode: would quarantine") }) {
		t.Errorf("reasons %q", d.Reasons)
	}
}
