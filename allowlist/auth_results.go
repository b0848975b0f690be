package allowlist

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// ResultsHeader returns the value of the Authentication-Results field that records id
// (RFC 8601): "authserv-id; spf=... smtp.mailfrom=...; dkim=... header.d=...;
// dmarc=... header.from=...", one dkim result per signature, unfolded. Values taken from
// the message are written only when they are plain addresses and domain names, so that
// a crafted d= or MAIL FROM cannot forge a result inside our own field.
func (a *Authenticator) ResultsHeader(id Identity) string {
	var rs []authres.Result
	if id.SPF != "" {
		spf := &authres.SPFResult{Value: authres.ResultValue(id.SPF)}
		if id.MailFrom != "" {
			spf.From = authSafeAddress(id.MailFrom)
		} else {
			spf.Helo = authSafeDomain(id.Helo)
		}
		rs = append(rs, spf)
	}
	if len(id.DKIM) == 0 {
		rs = append(rs, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range id.DKIM {
		rs = append(rs, &authres.DKIMResult{Value: authres.ResultValue(d.Result),
			Reason: authSafeReason(d.Reason), Domain: authSafeDomain(d.Domain)})
	}
	if id.DMARC != "" {
		rs = append(rs, &authres.DMARCResult{Value: authres.ResultValue(id.DMARC), From: authSafeDomain(id.FromDomain)})
	}
	// authres writes "method=value " even without parameters: drop that stray space
	v := strings.ReplaceAll(authres.Format(a.cfg.AuthservID, rs), " ;", ";")
	return strings.TrimRight(v, " ")
}

// authSafeDomain returns d lower-cased when it is a plain domain name (letters, digits,
// '-', '_', '.'), else "": the parameter is then left out.
func authSafeDomain(d string) string {
	d = authDomain(d)
	if d == "" || len(d) > 253 {
		return ""
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ""
		}
	}
	return d
}

// authSafeAddress returns addr when its local part is plain ASCII without quotes,
// backslashes, parentheses or white space, else only its domain (RFC 8601 allows that).
func authSafeAddress(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return authSafeDomain(addr)
	}
	domain := authSafeDomain(addr[i+1:])
	if domain == "" {
		return ""
	}
	for _, c := range addr[:i] {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"\()<>;@`, c) {
			return domain
		}
	}
	return addr[:i] + "@" + domain
}

// authSafeReason makes a reason safe inside a quoted string: printable ASCII only, no
// quotes or backslashes, no ';' (go-msgauth's own parser splits results at every ';',
// quoted or not, and it is not the only one), at most 100 bytes.
func authSafeReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r >= 0x7f || r == '"' || r == '\\' || r == ';' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.Join(strings.Fields(s), " ")
}
