package allowlist

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	dmarclib "github.com/emersion/go-msgauth/dmarc"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// Claim describes a sender for `fpsafe allowlist test`: what a message would carry and
// what would verify, without sending one.
type Claim struct {
	From     string     // header From address
	MailFrom string     // envelope sender ("" = same as From)
	IP       netip.Addr // client IP
	DKIM     []string   // domains whose DKIM signature verifies
	SPF      Result     // SPF result for MAIL FROM ("" = none)
}

// Identity is the identity such a message would get. DMARC passes when a verified DKIM
// domain or an SPF-passing MAIL FROM domain aligns (relaxed) with the From domain, and
// fails otherwise: the claim assumes the From domain publishes a DMARC record.
func (c Claim) Identity() Identity {
	id := Identity{From: strings.ToLower(c.From), FromDomain: mail.AddressDomain(c.From), FromFields: 1, MailFrom: c.MailFrom, ClientIP: c.IP, SPF: c.SPF}
	if c.From == "" {
		id.FromFields = 0
	}
	if id.MailFrom == "" {
		id.MailFrom = c.From
	}
	if id.SPF == "" {
		id.SPF = None
	}
	id.DMARC = Fail
	for _, d := range c.DKIM {
		id.DKIM = append(id.DKIM, DKIMResult{Domain: strings.ToLower(d), Result: Pass})
		if dmarcAligned(id.FromDomain, d, dmarclib.AlignmentRelaxed) {
			id.DMARC = Pass
		}
	}
	if id.SPF == Pass && dmarcAligned(id.FromDomain, id.SPFDomain(), dmarclib.AlignmentRelaxed) {
		id.DMARC = Pass
	}
	return id
}

// Explain says, for a person, which entry of l would claim the identity and whether the
// authentication it requires is there: "bypass" or what is still missing.
func Explain(l *List, id Identity, rcpts []string, now time.Time) []string {
	m := l.Lookup(id, rcpts, now)
	auth := fmt.Sprintf("identity: from=%s dkim=%s spf=%s dmarc=%s ip=%s", orNone(id.From), dkimText(id.DKIM), id.SPF, id.DMARC, ipText(id.ClientIP))
	if m == nil {
		return []string{auth, "no entry matches: no bypass (the message is scanned and decided as usual)"}
	}
	e, _ := l.Entry(m.Entry)
	lines := []string{auth, fmt.Sprintf("entry %s (match %s, require %s, owner %s) matches %s", e.ID, e.Match, e.Require, e.Owner, m.Matched)}
	if m.Authenticated {
		return append(lines, fmt.Sprintf("authenticated (%s): BYPASS — never quarantined; still scanned and tagged if an engine finds something", m.Why))
	}
	return append(lines, fmt.Sprintf("NOT authenticated (%s): no bypass; needs %s", m.Why, needs(e)))
}

// needs says what a sender must prove for an entry.
func needs(e Entry) string {
	switch e.Require {
	case RequireDMARC:
		return "dmarc=pass: a DKIM signature of the From domain, or SPF pass for a MAIL FROM in it, aligned with From"
	case RequireDKIM:
		return "dkim=pass: a verified DKIM signature whose d= is (a subdomain of) the entry's domain and aligns with From"
	case RequireSPF:
		return "spf=pass for a MAIL FROM domain aligned with the entry's and the From domain"
	case RequireIP:
		return "a client IP inside the entry's ip/ips"
	}
	return "nothing (require = none)"
}

func dkimText(rs []DKIMResult) string {
	if len(rs) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s(%s)", r.Result, r.Domain))
	}
	return strings.Join(parts, ",")
}

func ipText(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
