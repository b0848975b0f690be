package allowlist

import (
	"context"
	"errors"
	"fmt"
	"strings"

	dmarclib "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// errDMARCTemp marks a DMARC record lookup that failed for now (DNS timeout, SERVFAIL).
var errDMARCTemp = errors.New("dmarc: DNS lookup failed")

// dmarcRecord is the DMARC policy that applies to a From domain, if any.
type dmarcRecord struct {
	rec    *dmarclib.Record // nil when there is none (or err)
	domain string           // where it was found: the From domain or its organizational domain
	err    error            // errDMARCTemp-wrapped for a temporary failure; otherwise permanent
}

// lookupDMARC finds the policy for from: at _dmarc.<from>, else at the organizational
// domain (RFC 7489 section 6.6.3). go-msgauth does only the first lookup.
func (a *Authenticator) lookupDMARC(ctx context.Context, from string) dmarcRecord {
	if from == "" {
		return dmarcRecord{}
	}
	opts := &dmarclib.LookupOptions{LookupTXT: a.dns.lookupTXT(ctx)}
	domains := []string{from}
	if org := dmarcOrgDomain(from); org != from {
		domains = append(domains, org)
	}
	for _, d := range domains {
		rec, err := dmarclib.LookupWithOptions(d, opts)
		switch {
		case err == nil:
			return dmarcRecord{rec: rec, domain: d}
		case errors.Is(err, dmarclib.ErrNoPolicy):
			continue
		case dmarclib.IsTempFail(err):
			return dmarcRecord{err: fmt.Errorf("%w: _dmarc.%s: %v", errDMARCTemp, d, err)}
		default:
			return dmarcRecord{err: fmt.Errorf("_dmarc.%s: %w", d, err)}
		}
	}
	return dmarcRecord{}
}

// evaluateDMARC decides DMARC for id once DKIM and SPF are known (RFC 7489 section 4.2):
// pass when a passing DKIM d= or the SPF-passing MAIL FROM domain aligns with the From
// domain; temperror when a lookup failed and nothing aligned passed, since the answer
// might have been a pass; fail otherwise. The policy (p=, sp=, pct=) is the caller's
// business: fpsafe never rejects, it only declines to trust.
func evaluateDMARC(id Identity, r dmarcRecord) (Result, string) {
	switch {
	case id.FromDomain == "":
		return PermError, "" // authFrom left a note
	case r.err != nil && errors.Is(r.err, errDMARCTemp):
		return TempError, r.err.Error()
	case r.err != nil:
		return PermError, "dmarc: " + r.err.Error()
	case r.rec == nil:
		return None, ""
	}
	dkimMode, spfMode := r.rec.DKIMAlignment, r.rec.SPFAlignment
	pending := false
	for _, d := range id.DKIM {
		aligned := dmarcAligned(id.FromDomain, d.Domain, dkimMode)
		if aligned && d.Result == Pass {
			return Pass, ""
		}
		pending = pending || d.Result == TempError && (aligned || d.Domain == "")
	}
	spfAligned := dmarcAligned(id.FromDomain, id.SPFDomain(), spfMode)
	if spfAligned && id.SPF == Pass {
		return Pass, ""
	}
	if pending || spfAligned && id.SPF == TempError {
		return TempError, "dmarc " + id.FromDomain + ": temperror: an aligned DKIM or SPF check failed for now"
	}
	return Fail, "dmarc " + id.FromDomain + ": fail: " + dmarcWhy(id, dkimMode, spfMode)
}

// dmarcWhy explains a DMARC fail: what passed, and why it did not align.
func dmarcWhy(id Identity, dkimMode, spfMode dmarclib.AlignmentMode) string {
	var why []string
	for _, d := range id.DKIM {
		if d.Result == Pass {
			why = append(why, fmt.Sprintf("dkim d=%s passed but is not aligned (%s)", d.Domain, dmarcModeName(dkimMode)))
		}
	}
	if id.SPF == Pass {
		why = append(why, fmt.Sprintf("spf %s passed but is not aligned (%s)", id.SPFDomain(), dmarcModeName(spfMode)))
	}
	if len(why) == 0 {
		return "no DKIM or SPF pass"
	}
	return strings.Join(why, "; ")
}

func dmarcModeName(m dmarclib.AlignmentMode) string {
	if m == dmarclib.AlignmentStrict {
		return "strict"
	}
	return "relaxed"
}

// dmarcAligned reports whether domain aligns with from: in strict mode the names must be
// equal, in relaxed mode (the default) their organizational domains.
func dmarcAligned(from, domain string, mode dmarclib.AlignmentMode) bool {
	from, domain = authDomain(from), authDomain(domain)
	if from == "" || domain == "" {
		return false
	}
	if mode == dmarclib.AlignmentStrict {
		return from == domain
	}
	return dmarcOrgDomain(from) == dmarcOrgDomain(domain)
}

// dmarcOrgDomain is d's organizational domain: its public suffix plus one label, from
// the Public Suffix List compiled into golang.org/x/net. A public suffix itself (or a
// name the list cannot handle) is its own organizational domain.
func dmarcOrgDomain(d string) string {
	d = authDomain(d)
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}
