package allowlist

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
)

func TestAuthResultsHeader(t *testing.T) {
	a, err := NewAuthenticator(AuthConfig{AuthservID: "mx.test.example", Timeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{From: "a@agency.gov", FromDomain: "agency.gov", FromFields: 1, MailFrom: "bounce@agency.gov",
		ClientIP: netip.MustParseAddr("192.0.2.10"), SPF: Pass, DMARC: Pass,
		DKIM: []DKIMResult{{Domain: "agency.gov", Result: Pass}, {Domain: "evil.example", Result: Fail, Reason: "body hash did not verify"}}}
	got := a.ResultsHeader(id)
	want := `mx.test.example; spf=pass smtp.mailfrom=bounce@agency.gov; dkim=pass header.d=agency.gov; ` +
		`dkim=fail reason="body hash did not verify" header.d=evil.example; dmarc=pass header.from=agency.gov`
	if got != want {
		t.Errorf("ResultsHeader =\n%s\nwant\n%s", got, want)
	}

	null := Identity{Helo: "mx1.agency.gov", SPF: None, DMARC: PermError, FromFields: 2}
	if got, want := a.ResultsHeader(null), "mx.test.example; spf=none smtp.helo=mx1.agency.gov; dkim=none; dmarc=permerror"; got != want {
		t.Errorf("ResultsHeader(null sender) = %q, want %q", got, want)
	}
}

// TestAuthResultsHeaderInjection: values from the message cannot add results to ours.
func TestAuthResultsHeaderInjection(t *testing.T) {
	a, err := NewAuthenticator(AuthConfig{AuthservID: "mx.test.example", Timeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{FromDomain: "agency.gov", MailFrom: `"x;dkim=pass"@evil.example`, SPF: Fail, DMARC: Fail,
		DKIM: []DKIMResult{
			{Domain: `evil.example"; dmarc=pass header.from=agency.gov`, Result: Fail, Reason: "a\\\"; dkim=pass\r\nX-Injected: 1"},
		}}
	v := a.ResultsHeader(id)
	if strings.ContainsAny(v, "\r\n") {
		t.Fatalf("line break in %q", v)
	}
	authserv, results, err := authres.Parse(v)
	if err != nil || authserv != "mx.test.example" || len(results) != 3 {
		t.Fatalf("Parse(%q) = %q, %d results, %v", v, authserv, len(results), err)
	}
	for _, r := range results {
		switch r := r.(type) {
		case *authres.SPFResult:
			if r.Value != authres.ResultFail || r.From != "evil.example" {
				t.Errorf("spf = %+v", r)
			}
		case *authres.DKIMResult:
			if r.Value != authres.ResultFail || r.Domain != "" {
				t.Errorf("dkim = %+v", r)
			}
		case *authres.DMARCResult:
			if r.Value != authres.ResultFail || r.From != "agency.gov" {
				t.Errorf("dmarc = %+v", r)
			}
		default:
			t.Errorf("unexpected result %T %+v", r, r)
		}
	}
}
