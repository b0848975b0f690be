package replay

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// ParseReport reads back what policy.Report writes.
func TestParseReportRoundTrip(t *testing.T) {
	vs := []scoring.Verdict{
		{Engine: "clamav", Outcome: scoring.Clean, Weight: 1, Duration: 3 * time.Millisecond},
		{Engine: "spamassassin", Outcome: scoring.Spam, Scored: true, Score: 1000, Threshold: 5, Normalized: 20, Weight: 1, Duration: 118 * time.Millisecond,
			Details: []string{"GTUBE", "A", "B", "C", "D", "E", "F", "G", "H", "I"}},
		{Engine: "rspamd", Outcome: scoring.Suspicious, Scored: true, Score: 4.5, Threshold: 15, Normalized: 1.5, Weight: 2.5, Duration: 6 * time.Millisecond,
			Details: []string{"greylist", "R_SPF_ALLOW(-0.20)"}},
		{Engine: "clamd-2", Outcome: scoring.Suspicious, Weight: 1, Details: []string{"PUA.Win.Packer.Upx-1"}},
		{Engine: "spamd", Outcome: scoring.Timeout, Weight: 1, Reason: "no answer before the deadline (slice 7.2s)", Duration: 7200 * time.Millisecond},
		{Engine: "rspamd2", Outcome: scoring.Error, Weight: 1, Reason: "dial tcp [::1]:11333: connect: connection refused; retry later"},
		{Engine: "big", Outcome: scoring.Skipped, Weight: 1, Reason: "size 30.0MiB above max_size 25MiB"},
	}
	d := policy.Decision{Verdicts: vs, Reasons: []string{"quarantine: virus clamav: Eicar; score 12.5 >= quarantine_score 10 with 2 engines agreeing", "not scanned by spamd(timeout: no answer)", "tag: 1 engine(s) say spam"}}
	report := policy.Report(d)
	got := ParseReport(report)
	if len(got) != len(vs) {
		t.Fatalf("%d verdicts from %q", len(got), report)
	}
	for i, want := range vs {
		if len(want.Details) > 8 {
			want.Details = want.Details[:8] // the report quotes 8 and "+2"
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("verdict %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
}

func TestParseReportIgnoresOtherText(t *testing.T) {
	for _, s := range []string{"trust me", "", "unscanned: no engines configured", "tag: 1 engine(s) say spam", "x=maybe 1ms"} {
		if got := ParseReport(s); len(got) != 0 {
			t.Errorf("%q: %+v", s, got)
		}
	}
}

func header(raw string) string { return strings.ReplaceAll(raw, "\n", "\r\n") }

func TestHeaderVerdicts(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		from      string
		want      []scoring.Verdict
	}{
		{"report wins over x-spam", "X-FPSafe-Report: spamd=spam 7.0/5.0 n=7.0 w=1 80ms [BAYES_99]; tag: score 7.0 >= tag_score 5\nX-Spam-Status: No, score=0.0\n\n",
			FromReport, []scoring.Verdict{{Engine: "spamd", Outcome: scoring.Spam, Scored: true, Score: 7, Threshold: 5, Normalized: 7, Weight: 1, Duration: 80 * time.Millisecond, Details: []string{"BAYES_99"}}}},
		{"topmost report", "X-FPSafe-Report: clamd=clean 1ms\nX-FPSafe-Report: clamd=virus 1ms [Eicar]\n\n",
			FromReport, []scoring.Verdict{{Engine: "clamd", Outcome: scoring.Clean, Weight: 1, Duration: time.Millisecond}}},
		{"report without contributions falls back", "X-FPSafe-Report: trust me\nX-Spam-Flag: NO\nX-Spam-Status: No, score=-5.0\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Clean, Scored: true, Score: -5, Threshold: 5, Normalized: -5, Weight: 1}}},
		{"spamassassin", "X-Spam-Status: Yes, score=7.3 required=4.0 tests=BAYES_99,URIBL_BLACK\n\tautolearn=no version=4.0.0\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Spam, Scored: true, Score: 7.3, Threshold: 4, Normalized: 7.3 / 4 * 5, Weight: 1, Details: []string{"BAYES_99", "URIBL_BLACK"}}}},
		{"score only", "X-Spam-Score: 3.5\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Clean, Scored: true, Score: 3.5, Threshold: 5, Normalized: 3.5, Weight: 1}}},
		{"score only, above 5", "X-Spam-Score: 6\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Spam, Scored: true, Score: 6, Threshold: 5, Normalized: 6, Weight: 1}}},
		{"rspamd style score", "X-Spam-Score: 10.5 / 15.0\nX-Spam-Flag: NO\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Clean, Scored: true, Score: 10.5, Threshold: 15, Normalized: 3.5, Weight: 1}}},
		{"flag only", "X-Spam-Flag: YES\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Spam, Weight: 1}}},
		{"flag beats status", "X-Spam-Flag: YES\nX-Spam-Status: No, score=1.0\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Spam, Scored: true, Score: 1, Threshold: 5, Normalized: 1, Weight: 1}}},
		{"fpsafe's own x-spam", "X-Spam-Status: Yes, score=12.5 action=quarantine verdict=quarantined\n\n",
			FromXSpam, []scoring.Verdict{{Engine: XSpamEngine, Outcome: scoring.Spam, Scored: true, Score: 12.5, Threshold: 5, Normalized: 12.5, Weight: 1}}},
		{"nothing", "Subject: hi\nX-Spam-Level: ***\n\n", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _, err := readMessage(strings.NewReader(header(c.raw)), testSpool(t))
			if err != nil {
				t.Fatal(err)
			}
			got, from := HeaderVerdicts(m)
			if from != c.from || !reflect.DeepEqual(got, c.want) {
				t.Errorf("from %q %+v\nwant %q %+v", from, got, c.from, c.want)
			}
		})
	}
}
