package allowlist

import (
	"context"
	"net"
	"net/netip"
	"strings"

	spflib "blitiri.com.ar/go/spf"
)

// spfOutcome is what checkSPF found.
type spfOutcome struct {
	result Result
	note   string
}

// checkSPF checks whether the client may send for the MAIL FROM domain, or for the HELO
// name when MAIL FROM is null. Without a client address or a domain to check, the result
// is none.
func (a *Authenticator) checkSPF(ctx context.Context, id Identity) spfOutcome {
	domain := id.SPFDomain()
	switch {
	case !id.ClientIP.IsValid():
		return spfOutcome{None, "spf: client address unknown: not checked"}
	case !spfIsDomain(domain):
		return spfOutcome{None, "spf: no domain to check (MAIL FROM " + authQuote(id.MailFrom) + ", HELO " + authQuote(id.Helo) + ")"}
	}
	sender := id.MailFrom
	if sender == "" || strings.Count(sender, "@") != 1 {
		sender = "postmaster@" + domain // RFC 7208 section 2.4; also for "a@b"@c
	}
	ip := net.IP(id.ClientIP.Unmap().AsSlice())
	res, err := spflib.CheckHostWithSender(ip, id.Helo, sender, spflib.WithResolver(a.dns), spflib.WithContext(ctx))
	out := spfOutcome{result: Result(res)}
	switch res {
	case spflib.Pass, spflib.None, spflib.Neutral:
	case spflib.TempError:
		out.note = "spf " + domain + ": temperror: " + authErrText(err)
	default:
		out.note = "spf " + domain + ": " + string(res) + ": " + authErrText(err)
	}
	return out
}

// spfIsDomain reports whether d can be an SPF identity: a dotted name, not an address
// literal such as a HELO of "[192.0.2.1]".
func spfIsDomain(d string) bool {
	if d == "" || !strings.Contains(d, ".") || strings.ContainsAny(d, "[]: \t") {
		return false
	}
	_, err := netip.ParseAddr(d)
	return err != nil
}

// authErrText is err's message, or "" for nil.
func authErrText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// authQuote quotes s for a note.
func authQuote(s string) string { return "<" + s + ">" }
