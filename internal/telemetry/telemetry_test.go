package telemetry

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

func decision(verdicts []scoring.Verdict, match *allowlist.Match) policy.Decision {
	return policy.Decide(policy.Input{Verdicts: verdicts, Match: match}, policy.DefaultConfig())
}

// One decision record per message, with the fixed keys, and the counters that go with it;
// Find and Print read the record back for `fpsafe explain`.
func TestRecordAndExplain(t *testing.T) {
	var logbuf bytes.Buffer
	r := New(slog.New(slog.NewJSONHandler(&logbuf, nil)))
	m := &mail.Message{QueueID: "4XyZ1", Header: []mail.Field{{Name: "Message-ID", Value: " <a@b>"}},
		Env: mail.Envelope{MailFrom: "x@sec.gov", Rcpts: []string{"ir@ourcorp.example"}, ClientIP: netip.MustParseAddr("203.0.113.9")}}
	virus := scoring.Verdict{Engine: "clamd", Outcome: scoring.Virus, Details: []string{"Eicar"}, Weight: 1, Duration: 3 * time.Millisecond}
	spoof := &allowlist.Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "dmarc=fail"}
	r.Record(m, decision([]scoring.Verdict{virus}, spoof), 5*time.Millisecond)
	r.Record(&mail.Message{QueueID: "other"}, decision(nil, nil), time.Millisecond)
	r.Record(&mail.Message{QueueID: "third"}, decision([]scoring.Verdict{{Engine: "clamd", Outcome: scoring.Timeout}}, nil), time.Millisecond)

	rec := httptest.NewRecorder()
	r.Handler(func() Readiness { return Readiness{Ready: true} }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`fpsafe_messages_total{action="quarantine",verdict="quarantined"} 1`,
		`fpsafe_messages_total{action="deliver",verdict="unscanned"} 2`,
		`fpsafe_engine_outcomes_total{engine="clamd",outcome="virus"} 1`,
		`fpsafe_engine_seconds_count{engine="clamd"} 2`,
		`fpsafe_allowlist_total{entry="sec-filings",result="refused"} 1`,
		`fpsafe_unscanned_total{reason="no_engines"} 1`,
		`fpsafe_unscanned_total{reason="engines_failed"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	recs, err := Find(strings.NewReader("not json\n"+logbuf.String()), "4XyZ1")
	if err != nil || len(recs) != 1 {
		t.Fatalf("Find: %v %v\n%s", recs, err, logbuf.String())
	}
	got := recs[0]
	if got.Action != "quarantine" || got.ClientIP != "203.0.113.9" || got.MessageID != "<a@b>" || got.Engines[0].Outcome != "virus" ||
		got.Allowlist == nil || got.Allowlist.Authenticated || len(got.Reasons) == 0 {
		t.Fatalf("record %+v", got)
	}
	var out bytes.Buffer
	got.Print(&out)
	for _, want := range []string{"decision:   quarantine, verdict quarantined", "clamd", "Eicar", "entry sec-filings (require dmarc) matched sec.gov, NOT authenticated: no bypass (dmarc=fail)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReadyz(t *testing.T) {
	r := New(nil)
	r.RegisterEngineStates(func() []scoring.EngineState {
		return []scoring.EngineState{{Name: "clamd", Type: "clamd", Breaker: scoring.Open}}
	})
	h := r.Handler(func() Readiness { return Readiness{Ready: false} })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"ready": false`) {
		t.Fatalf("readyz %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if b, _ := io.ReadAll(rec.Body); !strings.Contains(string(b), `fpsafe_engine_breaker_open{engine="clamd",state="open",type="clamd"} 1`) {
		t.Fatalf("breaker gauge missing:\n%s", b)
	}
}

func TestConfig(t *testing.T) {
	for listen, ok := range map[string]bool{"": true, "127.0.0.1:9890": true, "[::1]:9890": true, "localhost:1": true, "0.0.0.0:9890": false, "9890": false} {
		if err := (Config{Listen: listen}).Validate(); (err == nil) != ok {
			t.Errorf("%q: %v", listen, err)
		}
	}
	if err := (Config{Listen: "0.0.0.0:9890", AllowRemote: true}).Validate(); err != nil {
		t.Error(err)
	}
}
