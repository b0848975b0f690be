package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

// List is an immutable, validated set of entries with the indexes that make Lookup fast:
// domains by name (Lookup walks up the labels of the From domain), addresses, DKIM domains
// and recipients by exact name, and client prefixes by prefix length. A List is safe for
// concurrent use; a new file makes a new List.
type List struct {
	source   string
	entries  []Entry
	c        []compiled
	byDomain map[string][]int32
	byAddr   map[string][]int32
	byDKIM   map[string][]int32
	byRcpt   map[string][]int32
	byPrefix map[netip.Prefix][]int32
	bits4    []int // prefix lengths used by IPv4 ip: entries, longest first
	bits6    []int
}

// NewList validates every entry and builds the indexes. Entry ids must be unique. The
// error lists every invalid entry.
func NewList(entries []Entry) (*List, error) { return newList(entries, "") }

// newList is NewList for entries read from source (a file name), which its errors name
// together with each entry's line.
func newList(entries []Entry, source string) (*List, error) {
	l := &List{
		source:   source,
		entries:  slices.Clone(entries),
		c:        make([]compiled, len(entries)),
		byDomain: map[string][]int32{},
		byAddr:   map[string][]int32{},
		byDKIM:   map[string][]int32{},
		byRcpt:   map[string][]int32{},
		byPrefix: map[netip.Prefix][]int32{},
	}
	var errs []error
	ids := make(map[string]int, len(entries))
	for i := range l.entries {
		e := &l.entries[i]
		e.IPs = slices.Clone(e.IPs)
		c, err := compile(e)
		if first, dup := ids[e.ID]; dup && e.ID != "" {
			err = errors.Join(err, fmt.Errorf("id used twice (first at %s)", where(&l.entries[first], first)))
		} else if e.ID != "" {
			ids[e.ID] = i
		}
		if err != nil {
			if len(errs) < 20 {
				errs = append(errs, entryError(source, e, i, err))
			}
			continue
		}
		l.c[i] = c
		n := int32(i)
		switch c.kind {
		case MatchDomain:
			l.byDomain[c.value] = append(l.byDomain[c.value], n)
		case MatchAddress:
			l.byAddr[c.value] = append(l.byAddr[c.value], n)
		case MatchDKIM:
			l.byDKIM[c.value] = append(l.byDKIM[c.value], n)
		case MatchRcpt:
			l.byRcpt[c.value] = append(l.byRcpt[c.value], n)
		case MatchIP:
			if len(l.byPrefix[c.prefix]) == 0 {
				if c.prefix.Addr().Is4() {
					l.bits4 = append(l.bits4, c.prefix.Bits())
				} else {
					l.bits6 = append(l.bits6, c.prefix.Bits())
				}
			}
			l.byPrefix[c.prefix] = append(l.byPrefix[c.prefix], n)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, b := range []*[]int{&l.bits4, &l.bits6} {
		slices.Sort(*b)
		*b = slices.Compact(*b)
		slices.Reverse(*b)
	}
	return l, nil
}

// where names an entry's position for messages: "line 12" or "entry #3".
func where(e *Entry, i int) string {
	if e.Line > 0 {
		return "line " + strconv.Itoa(e.Line)
	}
	return "entry #" + strconv.Itoa(i+1)
}

// entryError formats err about entries[i]: "file:12: entry "x": reason".
func entryError(source string, e *Entry, i int, err error) error {
	name := fmt.Sprintf("entry %q", e.ID)
	if e.ID == "" {
		name = fmt.Sprintf("entry #%d", i+1)
	}
	prefix := ""
	switch {
	case source != "" && e.Line > 0:
		prefix = fmt.Sprintf("%s:%d: ", source, e.Line)
	case source != "":
		prefix = source + ": "
	}
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		parts = append(parts, prefix+name+": "+line)
	}
	return errors.New(strings.Join(parts, "\n"))
}

// Source is the file the list was read from, or "".
func (l *List) Source() string { return l.source }

// Len is the number of entries, expired ones included.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.entries)
}

// Entries returns a copy of the entries, in file order.
func (l *List) Entries() []Entry {
	if l == nil {
		return nil
	}
	out := slices.Clone(l.entries)
	for i := range out {
		out[i].IPs = slices.Clone(out[i].IPs)
	}
	return out
}

// Entry returns the entry with id, if there is one.
func (l *List) Entry(id string) (Entry, bool) {
	if l != nil {
		for _, e := range l.entries {
			if e.ID == id {
				e.IPs = slices.Clone(e.IPs)
				return e, true
			}
		}
	}
	return Entry{}, false
}

// Expired returns the entries that no longer apply at now, in file order.
func (l *List) Expired(now time.Time) []Entry {
	if l == nil {
		return nil
	}
	var out []Entry
	for i := range l.entries {
		if l.entries[i].Expired(now) {
			e := l.entries[i]
			e.IPs = slices.Clone(e.IPs)
			out = append(out, e)
		}
	}
	return out
}

// candidate is one entry that matched, and what of the message it matched.
type candidate struct {
	i       int32
	matched string
	covered int // rcpt: recipients covered
}

// Lookup finds the entries that match the message and says whether one of them is proven.
// An authenticated match wins over an unauthenticated one; among equals the entry written
// first wins. When several entries match but none is proven, the first one is returned with
// Authenticated false and Why naming what failed (e.g. "dmarc=fail"), so that the decision
// can report the spoof. Lookup returns nil when no active entry matches. It does no I/O.
func (l *List) Lookup(id Identity, rcpts []string, now time.Time) *Match {
	if l == nil || len(l.entries) == 0 {
		return nil
	}
	var auth, first candidate
	auth.i, first.i = -1, -1
	consider := func(idx []int32, matched string) {
		for _, i := range idx {
			if !l.c[i].expires.IsZero() && !now.Before(l.c[i].expires) {
				continue
			}
			if auth.i >= 0 && auth.i < i {
				return // idx is ascending; nothing here can win any more
			}
			if first.i < 0 || i < first.i {
				first = candidate{i: i, matched: matched}
			}
			if l.proven(i, &id, matched) {
				auth = candidate{i: i, matched: matched}
				return
			}
		}
	}

	from, fromDomain := fromOf(&id)
	if fromDomain != "" && len(l.byDomain) > 0 {
		for d := fromDomain; ; {
			if idx := l.byDomain[d]; idx != nil {
				consider(idx, fromDomain)
			}
			dot := strings.IndexByte(d, '.')
			if dot < 0 {
				break
			}
			d = d[dot+1:]
		}
	}
	if from != "" && len(l.byAddr) > 0 {
		if idx := l.byAddr[from]; idx != nil {
			consider(idx, from)
		}
	}
	if len(l.byDKIM) > 0 {
		for k := range id.DKIM {
			d := lowerDomain(id.DKIM[k].Domain)
			if idx := l.byDKIM[d]; idx != nil {
				consider(idx, d)
			}
		}
	}
	if len(l.byPrefix) > 0 && id.ClientIP.IsValid() {
		ip := id.ClientIP.Unmap()
		bits := l.bits6
		if ip.Is4() {
			bits = l.bits4
		}
		for _, b := range bits {
			p, err := ip.Prefix(b)
			if err != nil {
				continue
			}
			if idx := l.byPrefix[p]; idx != nil {
				consider(idx, ip.String())
			}
		}
	}
	if len(l.byRcpt) > 0 && len(rcpts) > 0 {
		if c, ok := l.rcptCandidate(rcpts, now); ok {
			if first.i < 0 || c.i < first.i {
				first = c
			}
			if c.covered == len(rcpts) && (auth.i < 0 || c.i < auth.i) {
				auth = c
			}
		}
	}

	switch {
	case auth.i >= 0:
		return l.match(auth, &id, len(rcpts), true)
	case first.i >= 0:
		return l.match(first, &id, len(rcpts), false)
	}
	return nil
}

// rcptCandidate counts the recipients covered by active rcpt: entries and names the
// first-written entry among those that cover one.
func (l *List) rcptCandidate(rcpts []string, now time.Time) (candidate, bool) {
	c := candidate{i: -1}
	for _, r := range rcpts {
		r = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(r), "<"), ">"))
		covered := false
		for _, i := range l.byRcpt[r] {
			if !l.c[i].expires.IsZero() && !now.Before(l.c[i].expires) {
				continue
			}
			covered = true
			if c.i < 0 || i < c.i {
				c.i, c.matched = i, r
			}
			break
		}
		if covered {
			c.covered++
		}
	}
	return c, c.i >= 0
}

// fromOf returns the lower-cased From address and domain of id.
func fromOf(id *Identity) (from, domain string) {
	from = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id.From), "<"), ">"))
	domain = lowerDomain(id.FromDomain)
	if domain == "" {
		if at := strings.LastIndexByte(from, '@'); at >= 0 {
			domain = lowerDomain(from[at+1:])
		}
	}
	return from, domain
}

func lowerDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// proven reports whether entry i's require is met by id; matched is what matched.
func (l *List) proven(i int32, id *Identity, matched string) bool {
	ok, _ := l.check(i, id, matched, false)
	return ok
}

// check evaluates entry i's require against id and, when explain is set, says why.
func (l *List) check(i int32, id *Identity, matched string, explain bool) (bool, string) {
	c := &l.c[i]
	switch c.kind {
	case MatchIP:
		return true, "ip " + matched + " in " + c.value
	case MatchDKIM:
		for _, r := range id.DKIM {
			if r.Result == Pass && lowerDomain(r.Domain) == c.domain {
				return true, "dkim=pass d=" + c.domain
			}
		}
		if !explain {
			return false, ""
		}
		for _, r := range id.DKIM {
			if lowerDomain(r.Domain) == c.domain {
				return false, "dkim=" + resultText(r.Result) + " d=" + c.domain
			}
		}
		return false, "dkim=none"
	case MatchRcpt:
		return true, "every recipient allowlisted (require=none)"
	}

	// domain: and address: entries: the From must be the single author.
	_, fromDomain := fromOf(id)
	if id.FromFields != 1 {
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("%d From fields (only a message with one From can authenticate)", id.FromFields)
	}
	switch c.require {
	case RequireNone:
		return true, "require=none"
	case RequireDMARC:
		if id.DMARC == Pass {
			return true, "dmarc=pass"
		}
		return false, "dmarc=" + resultText(id.DMARC)
	case RequireDKIM:
		for _, r := range id.DKIM {
			d := lowerDomain(r.Domain)
			if r.Result == Pass && domainsAligned(d, c.domain) && domainsAligned(d, fromDomain) {
				return true, "dkim=pass d=" + d
			}
		}
		if !explain {
			return false, ""
		}
		for _, r := range id.DKIM {
			d := lowerDomain(r.Domain)
			if domainsAligned(d, c.domain) && domainsAligned(d, fromDomain) {
				return false, "dkim=" + resultText(r.Result) + " d=" + d
			}
		}
		if len(id.DKIM) > 0 {
			return false, "no dkim signature aligned with " + c.domain + " (d=" + lowerDomain(id.DKIM[0].Domain) + ")"
		}
		return false, "dkim=none"
	case RequireSPF:
		if id.SPF != Pass {
			return false, "spf=" + resultText(id.SPF)
		}
		d := id.SPFDomain()
		if d != "" && domainsAligned(d, c.domain) && domainsAligned(d, fromDomain) {
			return true, "spf=pass smtp.mailfrom=" + d
		}
		if d == "" {
			return false, "spf=pass but no MAIL FROM or HELO domain"
		}
		return false, "spf=pass for " + d + ", not aligned with " + c.domain
	case RequireIP:
		if ip := id.ClientIP.Unmap(); ip.IsValid() {
			for _, p := range c.ips {
				if p.Contains(ip) {
					return true, "client ip " + ip.String() + " in " + p.String()
				}
			}
			if explain {
				return false, "client ip " + ip.String() + " not in the entry's ips"
			}
			return false, ""
		}
		return false, "no client ip"
	}
	return false, "require=" + c.require
}

func (l *List) match(c candidate, id *Identity, nrcpt int, authenticated bool) *Match {
	e := &l.entries[c.i]
	m := &Match{Entry: e.ID, Matched: c.matched, Require: e.Require, Authenticated: authenticated}
	switch {
	case l.c[c.i].kind == MatchRcpt && !authenticated:
		m.Why = fmt.Sprintf("only %d of %d recipients are allowlisted", c.covered, nrcpt)
	default:
		_, m.Why = l.check(c.i, id, c.matched, true)
	}
	return m
}

func resultText(r Result) string {
	if r == "" {
		return string(None)
	}
	return string(r)
}

// domainsAligned reports DMARC's relaxed alignment of a and b: equal, or the same
// organizational domain (the public suffix list's registrable domain). So a.sec.gov,
// sec.gov and b.sec.gov are aligned with one another, while gov, evilsec.gov and
// sec.gov.evil.example are aligned with none of them.
func domainsAligned(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	oa, err := publicsuffix.EffectiveTLDPlusOne(a)
	if err != nil {
		return false
	}
	ob, err := publicsuffix.EffectiveTLDPlusOne(b)
	return err == nil && oa == ob
}

// isSubdomainOf reports whether d is a proper subdomain of parent ("a.sec.gov" of
// "sec.gov", not "evilsec.gov").
func isSubdomainOf(d, parent string) bool {
	return len(d) > len(parent)+1 && strings.HasSuffix(d, parent) && d[len(d)-len(parent)-1] == '.'
}
