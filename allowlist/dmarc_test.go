package allowlist

import (
	"fmt"
	"testing"

	dmarclib "github.com/emersion/go-msgauth/dmarc"
)

func TestDMARCOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"agency.gov":          "agency.gov",
		"news.agency.gov":     "agency.gov",
		"Mail.Example.ORG.":   "example.org",
		"a.b.example.co.uk":   "example.co.uk",
		"gov":                 "gov", // a public suffix is its own organizational domain
		"bank.example":        "bank.example",
		"mail.bank.example":   "bank.example", // unknown TLD: the default rule "*"
		"project.github.io":   "project.github.io",
		"x.project.github.io": "project.github.io",
		"":                    "",
	} {
		if got := dmarcOrgDomain(in); got != want {
			t.Errorf("dmarcOrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDMARCAligned(t *testing.T) {
	r, s := dmarclib.AlignmentMode(dmarclib.AlignmentRelaxed), dmarclib.AlignmentStrict // go-msgauth leaves Relaxed untyped
	cases := []struct {
		from, domain string
		mode         dmarclib.AlignmentMode
		want         bool
	}{
		{"agency.gov", "agency.gov", s, true},
		{"agency.gov", "AGENCY.GOV.", s, true},
		{"news.agency.gov", "agency.gov", s, false},
		{"news.agency.gov", "agency.gov", r, true},
		{"agency.gov", "mail.agency.gov", r, true},
		{"agency.gov", "other.gov", r, false}, // same public suffix is not alignment
		{"agency.gov", "agency.gov.evil.example", r, false},
		{"agency.gov", "", r, false},
		{"", "", r, false},
		{"a.github.io", "b.github.io", r, false},
	}
	for _, c := range cases {
		if got := dmarcAligned(c.from, c.domain, c.mode); got != c.want {
			t.Errorf("dmarcAligned(%q, %q, %q) = %v, want %v", c.from, c.domain, c.mode, got, c.want)
		}
	}
}

func TestEvaluateDMARC(t *testing.T) {
	relaxed, _ := dmarclib.Parse("v=DMARC1; p=reject")
	strict, _ := dmarclib.Parse("v=DMARC1; p=reject; adkim=s; aspf=s")
	base := Identity{From: "a@news.agency.gov", FromDomain: "news.agency.gov", FromFields: 1, MailFrom: "b@agency.gov"}
	authed := func(spfRes Result, sigs ...DKIMResult) Identity {
		id := base
		id.SPF, id.DKIM = spfRes, sigs
		return id
	}
	pass := func(d string) DKIMResult { return DKIMResult{Domain: d, Result: Pass} }
	temp := func(d string) DKIMResult { return DKIMResult{Domain: d, Result: TempError} }
	cases := []struct {
		name string
		id   Identity
		rec  dmarcRecord
		want Result
	}{
		{"aligned dkim", authed(Fail, pass("agency.gov")), dmarcRecord{rec: relaxed}, Pass},
		{"aligned spf", authed(Pass), dmarcRecord{rec: relaxed}, Pass},
		{"strict dkim", authed(Fail, pass("agency.gov")), dmarcRecord{rec: strict}, Fail},
		{"strict spf", authed(Pass), dmarcRecord{rec: strict}, Fail},
		{"strict, exact dkim", authed(Fail, pass("news.agency.gov")), dmarcRecord{rec: strict}, Pass},
		{"unaligned dkim", authed(Fail, pass("evil.example")), dmarcRecord{rec: relaxed}, Fail},
		{"no record", authed(Pass, pass("agency.gov")), dmarcRecord{}, None},
		{"record lookup temp", authed(Pass), dmarcRecord{err: fmt.Errorf("%w: x", errDMARCTemp)}, TempError},
		{"record broken", authed(Pass), dmarcRecord{err: fmt.Errorf("bad record")}, PermError},
		{"aligned dkim key temp", authed(Fail, temp("agency.gov"), pass("evil.example")), dmarcRecord{rec: relaxed}, TempError},
		{"unaligned dkim key temp", authed(Fail, temp("evil.example")), dmarcRecord{rec: relaxed}, Fail},
		{"aligned spf temp", authed(TempError), dmarcRecord{rec: relaxed}, TempError},
		{"pass beats temp", authed(TempError, pass("agency.gov")), dmarcRecord{rec: relaxed}, Pass},
		{"no From", Identity{SPF: Pass, MailFrom: "b@agency.gov", FromFields: 2}, dmarcRecord{}, PermError},
	}
	for _, c := range cases {
		if got, note := evaluateDMARC(c.id, c.rec); got != c.want {
			t.Errorf("%s: evaluateDMARC = %s (%s), want %s", c.name, got, note, c.want)
		}
	}
}
