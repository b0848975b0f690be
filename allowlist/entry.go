package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Entry is one allowlist entry, an [[entry]] table of the allowlist file:
//
//	[[entry]]
//	id      = "sec-filings"
//	match   = "domain:sec.gov"
//	require = "dmarc"
//	reason  = "EDGAR filing notices must never be quarantined"
//	owner   = "compliance@ourcorp.example"
//	added   = 2025-01-31
//	expires = 2026-01-31      # optional
//	ticket  = "COMP-1234"     # optional
//
// Match is one of:
//
//	domain:example.gov     the header From domain, or any subdomain of it (a.example.gov);
//	                       never a look-alike such as example.gov.evil.example or evilexample.gov
//	address:ir@example.com the header From address (compared case-insensitively)
//	dkim:example.gov       a DKIM signature whose d= is exactly example.gov
//	rcpt:abuse@ourcorp.example
//	                       a recipient mailbox that must receive everything
//	ip:192.0.2.0/24        the SMTP client address (an address or a CIDR prefix)
//
// Require names what must be proven before the entry bypasses quarantine; it must always be
// written out, "none" included:
//
//	dmarc  DMARC passed for the From domain (domain: and address: entries)
//	dkim   a DKIM signature passed whose d= is aligned (equal, a subdomain, or the same
//	       organizational domain) with the entry's domain and with the From domain; for a
//	       dkim:X entry, a passing signature with d=X (the only require a dkim: entry takes)
//	spf    SPF passed and the MAIL FROM domain (HELO for the null sender) is aligned with the
//	       entry's domain and with the From domain
//	ip     the client address is inside one of the entry's ips (domain: and address: entries
//	       must list ips; an ip: entry takes only require = "ip": its match is the proof)
//	none   nothing: any message matching is bypassed. Dangerous for sender entries, since a
//	       From can be forged; Lint warns about every one. rcpt: entries take only "none".
//
// A domain: or address: entry never authenticates a message with more or fewer than one
// From field. address: entries can only prove the domain of the address: DMARC, DKIM and
// SPF say nothing about the local part.
//
// A rcpt: entry bypasses a message only when every one of its recipients is covered by a
// rcpt: entry; a message also addressed to anyone else is reported as matched but not
// bypassed, so a spammer cannot reach the whole company by copying abuse@.
//
// Added is required. From the Expires date on (00:00 UTC) the entry no longer matches;
// Lint and List.Expired report it.
type Entry struct {
	ID      string   `toml:"id" json:"id"`
	Match   string   `toml:"match" json:"match"`
	Require string   `toml:"require" json:"require"`
	IPs     []string `toml:"ips,omitempty" json:"ips,omitempty"`
	Reason  string   `toml:"reason" json:"reason"`
	Owner   string   `toml:"owner" json:"owner"`
	Added   Date     `toml:"added" json:"added,omitzero"`
	Expires Date     `toml:"expires,omitempty" json:"expires,omitzero"`
	Ticket  string   `toml:"ticket,omitempty" json:"ticket,omitempty"`

	// Line is the line of the entry's [[entry]] header in its file; 0 when unknown.
	Line int `toml:"-" json:"-"`
}

// Require values.
const (
	RequireDMARC = "dmarc"
	RequireDKIM  = "dkim"
	RequireSPF   = "spf"
	RequireIP    = "ip"
	RequireNone  = "none"
)

// Match kinds, the part of Entry.Match before the colon.
const (
	MatchDomain  = "domain"
	MatchAddress = "address"
	MatchDKIM    = "dkim"
	MatchRcpt    = "rcpt"
	MatchIP      = "ip"
)

// entryKeys are the keys an [[entry]] table may hold.
var entryKeys = map[string]bool{
	"id": true, "match": true, "require": true, "ips": true, "reason": true,
	"owner": true, "added": true, "expires": true, "ticket": true,
}

// Expired reports whether the entry no longer applies at now.
func (e *Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires.Time())
}

// Date is a calendar day, written 2025-01-31 (a TOML local date, or a string). Its instant,
// Time, is 00:00 UTC of that day. The zero Date means unset.
type Date struct{ t time.Time }

// NewDate returns the Date of year, month and day.
func NewDate(year int, month time.Month, day int) Date {
	return Date{time.Date(year, month, day, 0, 0, 0, 0, time.UTC)}
}

// DateOf returns the UTC calendar day of t.
func DateOf(t time.Time) Date {
	t = t.UTC()
	return NewDate(t.Year(), t.Month(), t.Day())
}

// ParseDate parses "2006-01-02".
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return Date{}, fmt.Errorf("%q is not a date: want YYYY-MM-DD, e.g. 2025-01-31", s)
	}
	return Date{t}, nil
}

// IsZero reports whether d is unset.
func (d Date) IsZero() bool { return d.t.IsZero() }

// Time returns 00:00 UTC of d.
func (d Date) Time() time.Time { return d.t }

// String returns "2006-01-02", or "" for the zero Date.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.t.Format(time.DateOnly)
}

// MarshalText implements encoding.TextMarshaler.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "" is the zero Date.
func (d *Date) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Date{}
		return nil
	}
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalTOML accepts a TOML local date (2025-01-31) or a string "2025-01-31".
func (d *Date) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		p, err := ParseDate(v)
		if err != nil {
			return err
		}
		*d = p
		return nil
	case time.Time:
		if h, m, s := v.Clock(); h != 0 || m != 0 || s != 0 || v.Nanosecond() != 0 {
			return fmt.Errorf("%s has a time of day: want a date such as 2025-01-31", v.Format(time.RFC3339))
		}
		*d = NewDate(v.Year(), v.Month(), v.Day())
		return nil
	}
	return fmt.Errorf("%v is not a date: want YYYY-MM-DD, e.g. 2025-01-31", v)
}

// compiled is an Entry checked and normalized for lookups.
type compiled struct {
	kind    string
	value   string       // normalized domain, address or prefix text
	domain  string       // the domain that must be authenticated: domain:, address:, dkim:
	prefix  netip.Prefix // ip:
	require string
	ips     []netip.Prefix
	expires time.Time // zero = never
}

// compile validates e and normalizes it. The error does not name the entry.
func compile(e *Entry) (compiled, error) {
	var c compiled
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if e.ID == "" {
		fail("id is missing")
	} else if !validID(e.ID) {
		fail("id %q: use letters, digits and . _ - : only, at most 64 characters, starting with a letter or digit", e.ID)
	}

	kind, value, ok := strings.Cut(strings.TrimSpace(e.Match), ":")
	kind = strings.ToLower(strings.TrimSpace(kind))
	value = strings.TrimSpace(value)
	c.kind = kind
	switch {
	case e.Match == "":
		fail("match is missing: write domain:, address:, dkim:, rcpt: or ip:, e.g. match = \"domain:example.gov\"")
	case !ok || value == "":
		fail("match = %q: want KIND:VALUE with KIND domain, address, dkim, rcpt or ip", e.Match)
	default:
		switch kind {
		case MatchDomain, MatchDKIM:
			d, err := normDomain(value)
			if err != nil {
				fail("match = %q: %v", e.Match, err)
			}
			c.value, c.domain = d, d
		case MatchAddress, MatchRcpt:
			a, err := normAddress(value)
			if err != nil {
				fail("match = %q: %v", e.Match, err)
			}
			c.value = a
			c.domain = a[strings.LastIndexByte(a, '@')+1:]
		case MatchIP:
			p, err := parsePrefix(value)
			if err != nil {
				fail("match = %q: %v", e.Match, err)
			}
			c.prefix, c.value = p, p.String()
		default:
			fail("match = %q: unknown kind %q: want domain, address, dkim, rcpt or ip", e.Match, kind)
		}
	}

	c.require = e.Require
	switch e.Require {
	case "":
		fail("require is missing: write dmarc, dkim, spf, ip or none (none must be explicit)")
	case RequireDMARC, RequireDKIM, RequireSPF, RequireIP, RequireNone:
		switch {
		case kind == MatchDKIM && e.Require != RequireDKIM:
			fail("require = %q: a dkim: entry is proven by its DKIM signature; write require = \"dkim\"", e.Require)
		case kind == MatchIP && e.Require != RequireIP:
			fail("require = %q: an ip: entry is proven by the client address; write require = \"ip\"", e.Require)
		case kind == MatchRcpt && e.Require != RequireNone:
			fail("require = %q: a rcpt: entry is about our own recipients, not the sender; write require = \"none\"", e.Require)
		}
	default:
		fail("require = %q: want dmarc, dkim, spf, ip or none", e.Require)
	}

	switch {
	case e.Require == RequireIP && (kind == MatchDomain || kind == MatchAddress):
		if len(e.IPs) == 0 {
			fail("require = \"ip\" needs ips = [\"192.0.2.0/24\", ...]: the client addresses the sender uses")
		}
		for _, s := range e.IPs {
			p, err := parsePrefix(s)
			if err != nil {
				fail("ips: %v", err)
				continue
			}
			c.ips = append(c.ips, p)
		}
	case len(e.IPs) > 0:
		fail("ips is only used by domain: and address: entries with require = \"ip\"")
	}

	if e.Added.IsZero() {
		fail("added is missing: write the day the entry was approved, e.g. added = 2025-01-31")
	}
	if !e.Expires.IsZero() {
		if !e.Added.IsZero() && !e.Expires.Time().After(e.Added.Time()) {
			fail("expires = %s is not after added = %s", e.Expires, e.Added)
		}
		c.expires = e.Expires.Time()
	}
	return c, errors.Join(errs...)
}

func validID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-' || c == ':'):
		default:
			return false
		}
	}
	return true
}

// normDomain lower-cases a domain name and checks its syntax.
func normDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case strings.HasPrefix(d, "*.") || strings.HasPrefix(d, "."):
		return "", fmt.Errorf("write the domain itself (%s): an entry covers its subdomains already", strings.TrimLeft(d, "*."))
	case strings.Contains(d, "@"):
		return "", fmt.Errorf("%q is an address: use address: or rcpt:", s)
	case len(d) > 253:
		return "", fmt.Errorf("%q is longer than 253 characters", s)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q is not a domain name", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return "", fmt.Errorf("%q: write an internationalized domain in its xn-- (A-label) form", s)
			default:
				return "", fmt.Errorf("%q is not a domain name", s)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%q is not a domain name", s)
		}
	}
	return d, nil
}

// normAddress lower-cases local@domain and checks its syntax.
func normAddress(s string) (string, error) {
	a := strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || strings.ContainsAny(a, " \t<>,;\"") {
		return "", fmt.Errorf("%q is not an address: want local@domain", s)
	}
	d, err := normDomain(a[i+1:])
	if err != nil {
		return "", err
	}
	return strings.ToLower(a[:i]) + "@" + d, nil
}

// parsePrefix parses an address or a CIDR prefix whose host bits are zero.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4 prefixes in IPv4 form", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", s, m)
	}
	return p, nil
}

// ParseFile reads an allowlist file; see Parse.
func ParseFile(path string) (*List, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	return Parse(string(b), path)
}

// Parse reads the [[entry]] tables of an allowlist file named name. Syntax errors, unknown
// keys and invalid entries are refused as "name:line: reason": an unknown key or a value of
// the wrong type at its own line, any other problem of an entry at the line of its
// [[entry]] header. Every invalid entry is reported, not only the first.
func Parse(text, name string) (*List, error) {
	var doc struct {
		Entry []toml.Primitive `toml:"entry"`
	}
	md, err := toml.Decode(text, &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		if m := lastKeyRE.FindStringSubmatch(err.Error()); m != nil && m[1] == "entry" {
			if n := topKeyLine(text, "entry"); n > 0 {
				return nil, fmt.Errorf("%s:%d: write entries as [[entry]] tables", name, n)
			}
			return nil, fmt.Errorf("%s: write entries as [[entry]] tables", name)
		}
		return nil, fmt.Errorf("%s: %s", name, tomlMessage(err))
	}
	for _, k := range md.Undecoded() {
		if k[0] != "entry" {
			if n := topKeyLine(text, k[0]); n > 0 {
				return nil, fmt.Errorf("%s:%d: unknown key %q: an allowlist file holds only [[entry]] tables", name, n, k[0])
			}
			return nil, fmt.Errorf("%s: unknown key %q: an allowlist file holds only [[entry]] tables", name, k[0])
		}
	}

	headers := entryHeaders(text)
	if len(headers) != len(doc.Entry) {
		headers = nil // entries written another way (inline tables): no line numbers
	}
	entries := make([]Entry, len(doc.Entry))
	var errs []error
	for i, p := range doc.Entry {
		e := &entries[i]
		if headers != nil {
			e.Line = headers[i]
		}
		next := 0
		if headers != nil && i+1 < len(headers) {
			next = headers[i+1]
		}
		var raw map[string]any
		if err := md.PrimitiveDecode(p, &raw); err != nil {
			errs = append(errs, entryError(name, e, i, errors.New(tomlMessage(err))))
			continue
		}
		if id, ok := raw["id"].(string); ok {
			e.ID = id
		}
		var unknown []string
		for k := range raw {
			if !entryKeys[k] {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			// Report the unknown key written first, at its own line.
			slices.Sort(unknown)
			best, bestLine := unknown[0], blockKeyLine(text, unknown[0], e.Line, next)
			for _, k := range unknown[1:] {
				if n := blockKeyLine(text, k, e.Line, next); n > 0 && (bestLine == 0 || n < bestLine) {
					best, bestLine = k, n
				}
			}
			at := *e
			if bestLine > 0 {
				at.Line = bestLine
			}
			errs = append(errs, entryError(name, &at, i, fmt.Errorf("unknown key %q: want id, match, require, ips, reason, owner, added, expires or ticket", best)))
			continue
		}
		line := e.Line
		if err := md.PrimitiveDecode(p, e); err != nil {
			msg, key := tomlMessage(err), ""
			var pe toml.ParseError
			if errors.As(err, &pe) {
				msg, key = pe.Message, pe.LastKey
			} else if m := lastKeyRE.FindStringSubmatch(err.Error()); m != nil {
				key = m[1]
			}
			at := *e
			at.Line = line
			if key != "" {
				key = strings.TrimPrefix(key, "entry.")
				if n := blockKeyLine(text, key, line, next); n > 0 {
					at.Line = n
				}
				msg = key + ": " + msg
			}
			errs = append(errs, entryError(name, &at, i, errors.New(msg)))
			continue
		}
		e.Line = line
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newList(entries, name)
}

var (
	lastKeyRE     = regexp.MustCompile(`\(last key "([^"]+)"\)`)
	tomlPrefixRE  = regexp.MustCompile(`^toml: (line \d+ )?(\(last key "[^"]*"\): )?`)
	entryHeaderRE = regexp.MustCompile(`^\s*\[\[\s*entry\s*\]\]\s*(#.*)?$`)
	tableHeaderRE = regexp.MustCompile(`^\s*\[`)
)

// tomlMessage strips the library's "toml: line N (last key ...): " prefix, whose line is
// not reliable inside arrays of tables.
func tomlMessage(err error) string {
	return tomlPrefixRE.ReplaceAllString(err.Error(), "")
}

// scanLines calls f with the 1-based number and text of every line outside multi-line
// strings.
func scanLines(text string, f func(n int, line string)) {
	inML := ""
	for i, line := range strings.Split(text, "\n") {
		rest := line
		if inML != "" {
			j := strings.Index(rest, inML)
			if j < 0 {
				continue
			}
			rest, inML = rest[j+3:], ""
		} else {
			f(i+1, line)
		}
		// Track multi-line string delimiters opened on this line (comments ignored).
		for {
			if h := strings.IndexByte(rest, '#'); h >= 0 {
				q := strings.IndexAny(rest, `"'`)
				if q < 0 || h < q {
					break
				}
			}
			j := strings.Index(rest, `"""`)
			k := strings.Index(rest, `'''`)
			if j < 0 && k < 0 {
				break
			}
			delim := `"""`
			if j < 0 || (k >= 0 && k < j) {
				j, delim = k, `'''`
			}
			rest = rest[j+3:]
			if end := strings.Index(rest, delim); end >= 0 {
				rest = rest[end+3:]
				continue
			}
			inML = delim
			break
		}
	}
}

// entryHeaders returns the line of every [[entry]] header, in order.
func entryHeaders(text string) []int {
	var lines []int
	scanLines(text, func(n int, line string) {
		if entryHeaderRE.MatchString(line) {
			lines = append(lines, n)
		}
	})
	return lines
}

// blockKeyLine finds the line assigning key (or opening a [entry.key] table) between the
// header at line from and the next header at line to (0 = end of file).
func blockKeyLine(text, key string, from, to int) int {
	if from <= 0 {
		return 0
	}
	q := regexp.QuoteMeta(key)
	re := regexp.MustCompile(`^\s*(` + q + `|"` + q + `"|'` + q + `')\s*(=|\.)|^\s*\[\[?\s*entry\s*\.\s*"?` + q + `"?\s*\]`)
	found := 0
	scanLines(text, func(n int, line string) {
		if found == 0 && n > from && (to == 0 || n < to) && re.MatchString(line) {
			found = n
		}
	})
	return found
}

// topKeyLine finds where a top-level key is written: an assignment before the first table
// header, or a table header naming it.
func topKeyLine(text, key string) int {
	q := regexp.QuoteMeta(key)
	assign := regexp.MustCompile(`^\s*("?)` + q + `("?)\s*(=|\.)`)
	table := regexp.MustCompile(`^\s*\[\[?\s*"?` + q + `"?\s*(\]|\.)`)
	found, inTable := 0, false
	scanLines(text, func(n int, line string) {
		if found != 0 {
			return
		}
		if table.MatchString(line) || (!inTable && assign.MatchString(line)) {
			found = n
		}
		if tableHeaderRE.MatchString(line) {
			inTable = true
		}
	})
	return found
}
