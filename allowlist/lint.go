package allowlist

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

// Severity of a lint Finding.
type Severity string

// Severities. An error is a list a compliance review must not approve; a warning is
// something to look at.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Finding is one problem Lint found.
type Finding struct {
	Severity Severity `json:"severity"`
	Entry    string   `json:"entry,omitempty"` // id
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	Message  string   `json:"message"`
}

// String formats f as "file:12: error: entry "x": message".
func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File)
		if f.Line > 0 {
			fmt.Fprintf(&b, ":%d", f.Line)
		}
		b.WriteString(": ")
	} else if f.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", f.Line)
	}
	b.WriteString(string(f.Severity))
	b.WriteString(": ")
	if f.Entry != "" {
		fmt.Fprintf(&b, "entry %q: ", f.Entry)
	}
	b.WriteString(f.Message)
	return b.String()
}

// ExpiringSoon is how far ahead Lint warns about entries about to expire.
const ExpiringSoon = 14 * 24 * time.Hour

// Broad IP prefixes: Lint warns about ip: entries and ips wider than these.
const (
	broadBits4 = 24
	broadBits6 = 48
)

// Lint reviews a list as a compliance reviewer would, in entry order:
//
//   - error: an entry without reason or owner;
//   - error: a domain: entry that is a public suffix (domain:gov, domain:co.uk), so that it
//     covers every domain registered under it instead of one registrable domain;
//   - warning: an expired entry (it no longer matches), or one expiring within ExpiringSoon;
//   - warning: require = "none" (any forged From rides a sender entry; a rcpt: entry
//     delivers everything to that mailbox);
//   - warning: the same match written twice;
//   - warning: an entry shadowed by a broader active one with the same or a weaker require
//     (domain:sub.example.gov or address:a@example.gov under domain:example.gov, an ip:
//     prefix inside another), which therefore never decides anything;
//   - warning: an ip: prefix or ips element wider than /24 (IPv4) or /48 (IPv6).
func Lint(l *List, now time.Time) []Finding {
	if l == nil {
		return nil
	}
	var out []Finding
	seen := map[string]int{} // kind:value -> first entry
	for i := range l.entries {
		e, c := &l.entries[i], &l.c[i]
		add := func(sev Severity, format string, args ...any) {
			out = append(out, Finding{Severity: sev, Entry: e.ID, File: l.source, Line: e.Line, Message: fmt.Sprintf(format, args...)})
		}
		if strings.TrimSpace(e.Reason) == "" {
			add(SeverityError, "reason is missing: say why this sender must bypass quarantine")
		}
		if strings.TrimSpace(e.Owner) == "" {
			add(SeverityError, "owner is missing: name who answers for this entry")
		}
		if ps, _ := publicsuffix.PublicSuffix(c.value); c.kind == MatchDomain && ps == c.value {
			add(SeverityError, "domain:%s is a public suffix: it covers every domain registered under it; name one registrable domain", c.value)
		}
		expired := e.Expired(now)
		switch {
		case expired:
			add(SeverityWarning, "expired on %s: it no longer matches; renew it with a new expires date or remove it", e.Expires)
		case !e.Expires.IsZero() && e.Expires.Time().Sub(now) <= ExpiringSoon:
			add(SeverityWarning, "expires on %s", e.Expires)
		}
		if e.Require == RequireNone {
			if c.kind == MatchRcpt {
				add(SeverityWarning, "require = \"none\": every message to %s is delivered unquarantined, whatever its sender, viruses included (tagged)", c.value)
			} else {
				add(SeverityWarning, "require = \"none\": anyone can forge %s and bypass quarantine; require dmarc, dkim, spf or ip instead", c.value)
			}
		}
		if c.kind == MatchIP && isBroad(c.prefix) {
			add(SeverityWarning, "ip:%s covers %s addresses: make sure every one of them is the sender's", c.value, prefixSize(c.prefix))
		}
		for _, p := range c.ips {
			if isBroad(p) {
				add(SeverityWarning, "ips %s covers %s addresses: make sure every one of them is the sender's", p, prefixSize(p))
			}
		}

		key := c.kind + ":" + c.value
		if j, dup := seen[key]; dup {
			add(SeverityWarning, "%s is also matched by entry %q (%s)", key, l.entries[j].ID, where(&l.entries[j], j))
			continue
		}
		seen[key] = i
		if expired {
			continue
		}
		if j, ok := l.shadow(i, now); ok {
			add(SeverityWarning, "shadowed by entry %q (%s, %s), which covers it with the same or a weaker require: this entry never decides anything",
				l.entries[j].ID, l.entries[j].Match, where(&l.entries[j], j))
		}
	}
	return out
}

// shadow finds an active broader entry that covers entry i.
func (l *List) shadow(i int, now time.Time) (int, bool) {
	c := &l.c[i]
	try := func(idx []int32) (int, bool) {
		for _, j := range idx {
			if int(j) != i && l.covers(int(j), i, now) {
				return int(j), true
			}
		}
		return 0, false
	}
	switch c.kind {
	case MatchDomain, MatchAddress:
		d := c.domain
		if c.kind == MatchDomain {
			dot := strings.IndexByte(d, '.')
			if dot < 0 {
				return 0, false
			}
			d = d[dot+1:]
		}
		for {
			if j, ok := try(l.byDomain[d]); ok {
				return j, true
			}
			dot := strings.IndexByte(d, '.')
			if dot < 0 {
				return 0, false
			}
			d = d[dot+1:]
		}
	case MatchIP:
		for b := c.prefix.Bits() - 1; b >= 0; b-- {
			p, err := c.prefix.Addr().Prefix(b)
			if err != nil {
				continue
			}
			if j, ok := try(l.byPrefix[p]); ok {
				return j, true
			}
		}
	}
	return 0, false
}

// covers reports whether entry j, broader than entry i, authenticates everything i does
// for at least as long: j requires nothing, or the same as i (for require = "ip", ips
// covering i's), and j is active and does not expire before i.
func (l *List) covers(j, i int, now time.Time) bool {
	cj, ci := &l.c[j], &l.c[i]
	if l.entries[j].Expired(now) {
		return false
	}
	if !cj.expires.IsZero() && (ci.expires.IsZero() || cj.expires.Before(ci.expires)) {
		return false
	}
	switch {
	case cj.require == RequireNone:
		return true
	case cj.require != ci.require:
		return false
	case cj.require == RequireIP && cj.kind != MatchIP:
		for _, p := range ci.ips {
			if !prefixesCover(cj.ips, p) {
				return false
			}
		}
	}
	return true
}

func prefixesCover(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func isBroad(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < broadBits4
	}
	return p.Bits() < broadBits6
}

func prefixSize(p netip.Prefix) string {
	host := p.Addr().BitLen() - p.Bits()
	if host >= 63 {
		return fmt.Sprintf("2^%d", host)
	}
	return fmt.Sprintf("%d", uint64(1)<<host)
}
