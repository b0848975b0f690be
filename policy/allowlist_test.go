package policy_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/dnstest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

// authPipeline is the whole pipeline with real DKIM/SPF/DMARC checks against a local DNS
// server, an allowlist entry for sec.gov requiring DMARC, and an engine that finds a virus
// in every message: only the authenticated sec.gov sender may escape quarantine.
func authPipeline(t *testing.T) (*policy.Pipeline, testmsg.DKIMKey, testmsg.DKIMKey) {
	dns := dnstest.Start(t)
	gov, evil := testmsg.NewDKIMKey(), testmsg.NewDKIMKey()
	dns.TXT("s1._domainkey.sec.gov", gov.Record)
	dns.TXT("_dmarc.sec.gov", "v=DMARC1; p=reject")
	dns.TXT("sec.gov", "v=spf1 ip4:192.0.2.10 -all")
	dns.TXT("s1._domainkey.evil.example", evil.Record)
	dns.TXT("s1._domainkey.sec.gov.evil.example", evil.Record)
	dns.TXT("_dmarc.evil.example", "v=DMARC1; p=none")
	auth, err := allowlist.NewAuthenticator(allowlist.AuthConfig{AuthservID: "mx.ourcorp.example", Resolver: dns.Addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	list, err := allowlist.NewList([]allowlist.Entry{{
		ID: "sec-filings", Match: "domain:sec.gov", Require: "dmarc", Reason: "filings", Owner: "compliance",
		Added: allowlist.NewDate(2026, 1, 1),
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := scoring.EngineConfig{Name: "clamd", Type: "clamd", Address: "inet:127.0.0.1:1"}.WithDefaults()
	virus := &enginetest.Engine{EngineName: "clamd", Verdict: scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}}}
	return &policy.Pipeline{
		Engines:    scoring.NewAggregator([]scoring.Configured{{Engine: virus, Config: c}}, scoring.DefaultConfig(), nil),
		Identifier: auth,
		Allowlist:  list,
		Config:     policy.DefaultConfig(),
	}, gov, evil
}

func run(t *testing.T, p *policy.Pipeline, raw []byte, mailFrom, ip string) policy.Decision {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw), mail.NewSpool(t.TempDir(), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	m.Env = mail.Envelope{MailFrom: mailFrom, Helo: "mx.sender.example", ClientIP: netip.MustParseAddr(ip), Rcpts: []string{"ir@ourcorp.example"}}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	return p.Run(ctx, m)
}

// An authenticated allowlisted sender is never quarantined, even with a virus; every spoof
// of it is.
func TestAllowlistOnlyForAuthenticatedSenders(t *testing.T) {
	p, gov, evil := authPipeline(t)
	genuine := testmsg.Sign(testmsg.From("filings@sec.gov", "Filing", true), "sec.gov", "s1", gov)
	cases := []struct {
		name     string
		raw      []byte
		mailFrom string
		ip       string
		action   policy.Action
		verdict  policy.Verdict
		reason   string
	}{
		{"genuine, DKIM-signed by sec.gov", genuine, "bounces@sec.gov", "203.0.113.50",
			policy.Tag, policy.VerdictAllowlisted, "allowlisted by entry sec-filings (dmarc=pass): quarantine bypassed"},
		{"genuine by SPF only", testmsg.From("filings@sec.gov", "Filing", true), "bounces@sec.gov", "192.0.2.10",
			policy.Tag, policy.VerdictAllowlisted, "quarantine bypassed"},
		{"forged From from an unauthorized IP, unsigned", testmsg.From("filings@sec.gov", "Filing", true), "filings@sec.gov", "203.0.113.9",
			policy.Quarantine, policy.VerdictQuarantined, "entry sec-filings matched sec.gov but dmarc=fail"},
		{"From sec.gov signed by another domain", testmsg.Sign(testmsg.From("filings@sec.gov", "Filing", true), "evil.example", "s1", evil), "x@evil.example", "203.0.113.9",
			policy.Quarantine, policy.VerdictQuarantined, "but dmarc=fail"},
		{"broken signature (body changed after signing)", bytes.Replace(genuine, []byte("Please find"), []byte("Please fund"), 1), "bounces@sec.gov", "203.0.113.9",
			policy.Quarantine, policy.VerdictQuarantined, "but dmarc=fail"},
		{"genuine signed message replayed with an extra From prepended", append([]byte("From: ceo@sec.gov\r\n"), genuine...), "bounces@sec.gov", "203.0.113.9",
			policy.Quarantine, policy.VerdictQuarantined, ""},
		{"look-alike subdomain sec.gov.evil.example", testmsg.Sign(testmsg.From("filings@sec.gov.evil.example", "Filing", true), "sec.gov.evil.example", "s1", evil), "x@sec.gov.evil.example", "203.0.113.9",
			policy.Quarantine, policy.VerdictQuarantined, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := run(t, p, c.raw, c.mailFrom, c.ip)
			if d.Action != c.action || d.Verdict != c.verdict {
				t.Fatalf("got %s/%s, want %s/%s\n%s\nidentity %+v", d.Action, d.Verdict, c.action, c.verdict, policy.Report(d), d.Identity)
			}
			if c.reason != "" && !strings.Contains(policy.Report(d), c.reason) {
				t.Fatalf("report lacks %q:\n%s", c.reason, policy.Report(d))
			}
			if d.Add[0].Name != "Authentication-Results" || !strings.HasPrefix(d.Add[0].Value, "mx.ourcorp.example;") {
				t.Fatalf("first added field %+v", d.Add[0])
			}
		})
	}
}

// A forged Authentication-Results claiming our authserv-id is removed, and does not
// authenticate anything.
func TestForgedAuthResultsDoNotAuthenticate(t *testing.T) {
	p, _, _ := authPipeline(t)
	raw := append([]byte("Authentication-Results: mx.ourcorp.example; dkim=pass header.d=sec.gov; dmarc=pass header.from=sec.gov\r\n"),
		testmsg.From("filings@sec.gov", "Filing", true)...)
	d := run(t, p, raw, "filings@sec.gov", "203.0.113.9")
	if d.Action != policy.Quarantine {
		t.Fatalf("forged results bypassed quarantine: %s\n%s", d.Action, policy.Report(d))
	}
	if len(d.Remove) != 1 || d.Remove[0].Name != "Authentication-Results" {
		t.Fatalf("removals %+v", d.Remove)
	}
}
