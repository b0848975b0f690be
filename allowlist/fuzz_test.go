package allowlist

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authreslib "github.com/emersion/go-msgauth/authres"
)

// fuzzNow is a day on which some entries of the example list have expired and some not.
var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fuzzResults are the results an Identity can carry: the authenticators only ever write
// these (index 0, "", is "not checked").
var fuzzResults = []Result{"", None, Pass, Fail, SoftFail, Neutral, TempError, PermError}

func fuzzResult(b byte) Result { return fuzzResults[int(b)%len(fuzzResults)] }

// fuzzIdentities are fixed identities looked up in every list FuzzParseAllowlist accepts.
var fuzzIdentities = []struct {
	id    Identity
	rcpts []string
}{
	{Identity{From: "a@sec.gov", FromDomain: "sec.gov", FromFields: 1, DMARC: Pass}, []string{"bob@ourcorp.example"}},
	{Identity{From: "a@sec.gov", FromDomain: "sec.gov", FromFields: 2, DMARC: Pass}, nil},
	{Identity{From: "orders@supplier.example", FromDomain: "supplier.example", FromFields: 1,
		ClientIP: netip.MustParseAddr("198.51.100.17"), DKIM: []DKIMResult{{Domain: "mailer.irwire.example", Result: Pass}}}, nil},
	{Identity{FromFields: 0, ClientIP: netip.MustParseAddr("2001:db8:51::1"), SPF: Pass, MailFrom: "x@supplier.example"},
		[]string{"abuse@ourcorp.example", "<Abuse@OurCorp.Example>"}},
	{Identity{From: "A@Mail.Sec.Gov.", FromDomain: "Mail.Sec.Gov.", FromFields: 1, DMARC: Fail, SPF: Pass, MailFrom: "b@sec.gov",
		ClientIP: netip.MustParseAddr("::ffff:198.51.100.18")}, []string{"abuse@ourcorp.example", "x@y"}},
	{Identity{}, nil},
}

// fuzzCheckMatch checks what Lookup answered for id against the entry it names: the entry
// exists and applies at now; a domain: or address: entry authenticates only a message
// with exactly one From field, and only a From that is the entry's domain (or a
// subdomain) or address, never a look-alike; every Authenticated match has the proof its
// require names.
func fuzzCheckMatch(t *testing.T, l *List, id Identity, rcpts []string, now time.Time, m *Match) {
	t.Helper()
	if m == nil {
		return
	}
	e, ok := l.Entry(m.Entry)
	if !ok {
		t.Fatalf("match names entry %q, which is not in the list", m.Entry)
	}
	if e.Expired(now) {
		t.Fatalf("expired entry %q matched at %s", e.ID, now)
	}
	if m.Require != e.Require {
		t.Fatalf("match require %q, entry says %q", m.Require, e.Require)
	}
	kind, value, _ := strings.Cut(e.Match, ":")
	kind = strings.ToLower(strings.TrimSpace(kind))
	value = strings.ToLower(strings.TrimSuffix(strings.Trim(strings.TrimSpace(value), "<>"), "."))
	from, fromDomain := fromOf(&id)
	if !m.Authenticated {
		return
	}
	switch kind {
	case MatchDomain, MatchAddress:
		if id.FromFields != 1 {
			t.Fatalf("INVARIANT: entry %q (%s) authenticated a message with %d From fields: %+v", e.ID, e.Match, id.FromFields, m)
		}
		// (a From domain with empty labels, ".sec.gov" or "a..sec.gov", walks up to sec.gov
		// too; Identify never produces one, since net/mail refuses such addresses)
		if kind == MatchDomain && fromDomain != value && !isSubdomainOf(fromDomain, value) && !strings.Contains("."+fromDomain+".", "..") {
			t.Fatalf("entry %q (%s) authenticated From domain %q", e.ID, e.Match, fromDomain)
		}
		if kind == MatchAddress && from != value {
			t.Fatalf("entry %q (%s) authenticated From %q", e.ID, e.Match, from)
		}
		switch e.Require {
		case RequireDMARC:
			if id.DMARC != Pass {
				t.Fatalf("entry %q authenticated with dmarc=%q", e.ID, id.DMARC)
			}
		case RequireDKIM:
			if !fuzzDKIMPass(id, "") {
				t.Fatalf("entry %q authenticated without a passing DKIM signature", e.ID)
			}
		case RequireSPF:
			if id.SPF != Pass {
				t.Fatalf("entry %q authenticated with spf=%q", e.ID, id.SPF)
			}
		case RequireIP:
			if !id.ClientIP.IsValid() {
				t.Fatalf("entry %q authenticated without a client address", e.ID)
			}
		}
	case MatchDKIM:
		if !fuzzDKIMPass(id, value) {
			t.Fatalf("entry %q (%s) authenticated without a passing signature d=%s: %+v", e.ID, e.Match, value, id.DKIM)
		}
	case MatchIP:
		p, err := parsePrefix(value)
		if err != nil || !id.ClientIP.IsValid() || !p.Contains(id.ClientIP.Unmap()) {
			t.Fatalf("entry %q (%s) authenticated client %v", e.ID, e.Match, id.ClientIP)
		}
	case MatchRcpt:
		if len(rcpts) == 0 {
			t.Fatalf("entry %q (%s) authenticated a message without recipients", e.ID, e.Match)
		}
	}
}

// fuzzDKIMPass reports whether id has a passing DKIM signature, for domain d if d != "".
func fuzzDKIMPass(id Identity, d string) bool {
	for _, r := range id.DKIM {
		if r.Result == Pass && (d == "" || lowerDomain(r.Domain) == d) {
			return true
		}
	}
	return false
}

// fuzzAllowlists are the seed allowlist files: the example and the bad ones.
func fuzzAllowlists(f *testing.F) []string {
	f.Helper()
	files, _ := filepath.Glob("../testdata/allowlist/*.toml")
	var out []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, string(b))
	}
	if len(out) == 0 {
		f.Fatal("no seed allowlists")
	}
	return out
}

// FuzzParseAllowlist: Parse never panics and refuses with the file's name; an accepted
// list answers Lookup, Explain, Lint and Expired for fixed identities without panicking
// and within the matching invariants; and its entries, written back out as [[entry]]
// tables the way the file store writes them, parse to the same entries.
func FuzzParseAllowlist(f *testing.F) {
	for _, s := range fuzzAllowlists(f) {
		f.Add(s)
	}
	for _, s := range []string{
		"",
		"entry = []\n",
		"entry = [{id = \"a\", match = \"domain:a.example\", require = \"dmarc\", reason = \"r\", owner = \"o\", added = 2025-01-01}]\n",
		"[[entry]]\nid = \"x\"\nmatch = \"address:<A@B.example>\"\nrequire = \"ip\"\nips = [\"::ffff:192.0.2.0/120\"]\nreason = \"\"\"\n[[entry]]\n\"\"\"\nowner = 'o'\nadded = \"2025-01-01\"\nexpires = 2025-01-02\n",
		"[[entry]]\nid = \"x\"\n[entry.sub]\na = 1\n",
		"[[entry]]\nid = \"rc\"\nmatch = \"rcpt:abuse@ourcorp.example\"\nrequire = \"none\"\nreason = \"r\\u0001\\ttab\"\nowner = \"o\"\nadded = 2025-01-01\n",
		"[[entry]]\nid = \"ip6\"\nmatch = \"ip:2001:db8::/32\"\nrequire = \"ip\"\nreason = \"r\"\nowner = \"o\"\nadded = 2025-01-01T00:00:00\n",
		"[[entry]] # c\nid = \"d\"\nmatch = \"domain:xn--bcher-kva.example.\"\nrequire = \"spf\"\nreason = \"r\"\nowner = \"o\"\nadded = 2025-01-01\nticket = \"T-1\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		l, err := Parse(text, "fuzz.toml")
		if err != nil {
			if l != nil {
				t.Fatalf("error %v with a list", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if l == nil {
			t.Fatal("nil list without an error")
		}
		for _, c := range fuzzIdentities {
			m := l.Lookup(c.id, c.rcpts, fuzzNow)
			fuzzCheckMatch(t, l, c.id, c.rcpts, fuzzNow, m)
			Explain(l, c.id, c.rcpts, fuzzNow)
		}
		for _, fd := range Lint(l, fuzzNow) {
			_ = fd.String()
		}
		l.Expired(fuzzNow)

		entries := l.Entries()
		if len(entries) != l.Len() {
			t.Fatalf("Entries %d, Len %d", len(entries), l.Len())
		}
		var b strings.Builder
		for i := range entries {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(renderEntry(&entries[i]))
			if e := entries[i]; e.Line > 0 {
				cutEntry(text, e.Line) // Remove's rewrite: must not panic (commit checks the result)
			}
		}
		l2, err := Parse(b.String(), "rendered.toml")
		if err != nil {
			t.Fatalf("accepted entries, rendered, are refused: %v\n%s", err, b.String())
		}
		if !sameEntries(l2.Entries(), entries) {
			t.Fatalf("accepted entries, rendered, parse differently:\n%+v\n%+v\n%s", entries, l2.Entries(), b.String())
		}
	})
}

// fuzzSplit splits a fuzzed list of names at ','; "" is no names.
func fuzzSplit(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// FuzzLookup looks up identities built from fuzzed fields (From, From domain, number of
// From fields, DKIM domains and results, SPF, DMARC, client address bytes, recipients,
// the day) in the example allowlist and in the unit tests' list. Lookup and Explain never
// panic, and the INVARIANT holds: a domain: or address: entry never authenticates a
// message whose From fields are not exactly one (with the other checks of
// fuzzCheckMatch).
func FuzzLookup(f *testing.F) {
	example, err := ParseFile("../testdata/allowlist/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	lists := []*List{example, lookupList(f)}

	f.Add("a@sec.gov", "sec.gov", int8(1), "sec.gov", []byte{2}, byte(2), byte(2), []byte{198, 51, 100, 17}, "bob@ourcorp.example", int16(0))
	f.Add("a@sec.gov", "sec.gov", int8(2), "sec.gov", []byte{2}, byte(2), byte(2), []byte{198, 51, 100, 17}, "", int16(0))
	f.Add("A@Mail.SEC.gov", "", int8(1), "", []byte{}, byte(0), byte(2), []byte{}, "", int16(0))
	f.Add("orders@supplier.example", "supplier.example", int8(1), "mailer.irwire.example,x", []byte{2, 3}, byte(2), byte(3),
		[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "abuse@ourcorp.example", int16(400))
	f.Add("<Orders@Supplier.Example>", "", int8(0), "", []byte{}, byte(2), byte(2),
		[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 20}, "abuse@ourcorp.example,<ABUSE@ourcorp.example>", int16(-800))
	f.Add("x@evilsec.gov", "sec.gov.evil.example", int8(1), "ir.example.com", []byte{2}, byte(2), byte(2), []byte{}, "postmaster@ourcorp.example,abuse@ourcorp.example", int16(0))
	f.Add("notices@finra.org", "finra.org", int8(-1), "FINRA.org.", []byte{2}, byte(2), byte(2), []byte{192, 0, 2, 1}, "x", int16(0))
	f.Add("b@billing.example.net", "billing.example.net", int8(1), "", []byte{}, byte(2), byte(0), []byte{}, "", int16(0))

	f.Fuzz(func(t *testing.T, fromAddr, fromDomain string, fromFields int8, dkimDomains string, dkimResults []byte,
		spfRes, dmarcRes byte, ip []byte, rcptList string, days int16) {
		id := Identity{From: fromAddr, FromDomain: fromDomain, FromFields: int(fromFields), MailFrom: fromAddr,
			SPF: fuzzResult(spfRes), DMARC: fuzzResult(dmarcRes)}
		for i, d := range fuzzSplit(dkimDomains) {
			r := Pass
			if i < len(dkimResults) {
				r = fuzzResult(dkimResults[i])
			}
			id.DKIM = append(id.DKIM, DKIMResult{Domain: d, Result: r})
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			id.ClientIP = a
		}
		rcpts := fuzzSplit(rcptList)
		now := fuzzNow.AddDate(0, 0, int(days))
		for _, l := range lists {
			m := l.Lookup(id, rcpts, now)
			fuzzCheckMatch(t, l, id, rcpts, now, m)
			Explain(l, id, rcpts, now)
		}
	})
}

// FuzzResultsHeader: the Authentication-Results value fpsafe writes, from an Identity
// whose names come from the message (MAIL FROM, HELO, From domain, DKIM d= and reasons),
// is one line without control characters, parses back with go-msgauth with fpsafe's
// authserv-id, and holds exactly the results fpsafe meant to write (one spf, one dkim per
// signature or dkim=none, one dmarc), with the same values: nothing in the message can
// add, drop or change a result.
func FuzzResultsHeader(f *testing.F) {
	f.Add("mx.test.example", "bounce@agency.gov", "mx1.agency.gov", "agency.gov", "agency.gov,evil.example",
		"\x00body hash did not verify", []byte{2, 3}, byte(2), byte(2))
	f.Add("mx.test.example", `"x;dkim=pass"@evil.example`, "", "agency.gov",
		`evil.example"; dmarc=pass header.from=agency.gov`, "a\\\"; dkim=pass\r\nX-Injected: 1", []byte{3}, byte(3), byte(3))
	f.Add("fpsafe", "", "[192.0.2.1]", "", "", "", []byte{}, byte(1), byte(7))
	f.Add("host-1.example", "a=b,c@x.example", "helo", "x.example", "A.Example.", "(comment) reason", []byte{6}, byte(6), byte(0))
	f.Add("", "<>", "helo.example", "x", "x", "", []byte{0}, byte(0), byte(4))
	f.Fuzz(func(t *testing.T, authserv, mailFrom, helo, fromDomain, dkimDomains, reasons string, dkimResults []byte, spfRes, dmarcRes byte) {
		a, err := NewAuthenticator(AuthConfig{AuthservID: authserv, Timeout: time.Second})
		if err != nil {
			authserv = "mx.test.example"
			if a, err = NewAuthenticator(AuthConfig{AuthservID: authserv, Timeout: time.Second}); err != nil {
				t.Fatal(err)
			}
		}
		id := Identity{MailFrom: mailFrom, Helo: helo, FromDomain: fromDomain, FromFields: 1,
			SPF: fuzzResult(spfRes), DMARC: fuzzResult(dmarcRes)}
		rs := strings.Split(reasons, "\x00")
		for i, d := range fuzzSplit(dkimDomains) {
			r := DKIMResult{Domain: d, Result: Pass}
			if i < len(dkimResults) && fuzzResult(dkimResults[i]) != "" {
				r.Result = fuzzResult(dkimResults[i])
			}
			if i < len(rs) {
				r.Reason = rs[i]
			}
			id.DKIM = append(id.DKIM, r)
		}

		v := a.ResultsHeader(id)
		for i := 0; i < len(v); i++ {
			if v[i] < ' ' || v[i] == 0x7f {
				t.Fatalf("control byte %#x at %d in %q", v[i], i, v)
			}
		}
		gotID, results, err := authreslib.Parse(v)
		if err != nil {
			t.Fatalf("Parse(%q): %v", v, err)
		}
		if gotID != authserv {
			t.Fatalf("authserv-id %q, want %q in %q", gotID, authserv, v)
		}

		type want struct {
			method, value, domain string
		}
		var wants []want
		if id.SPF != "" {
			wants = append(wants, want{"spf", string(id.SPF), ""})
		}
		if len(id.DKIM) == 0 {
			wants = append(wants, want{"dkim", "none", ""})
		}
		for _, d := range id.DKIM {
			wants = append(wants, want{"dkim", string(d.Result), authSafeDomain(d.Domain)})
		}
		if id.DMARC != "" {
			wants = append(wants, want{"dmarc", string(id.DMARC), authSafeDomain(id.FromDomain)})
		}
		if len(results) != len(wants) {
			t.Fatalf("%d results in %q, want %d (%+v)", len(results), v, len(wants), wants)
		}
		for i, r := range results {
			w := wants[i]
			switch r := r.(type) {
			case *authreslib.SPFResult:
				if w.method != "spf" || string(r.Value) != w.value {
					t.Fatalf("result %d is spf=%s, want %s=%s in %q", i, r.Value, w.method, w.value, v)
				}
			case *authreslib.DKIMResult:
				if w.method != "dkim" || string(r.Value) != w.value || r.Domain != w.domain {
					t.Fatalf("result %d is dkim=%s d=%q, want %s=%s d=%q in %q", i, r.Value, r.Domain, w.method, w.value, w.domain, v)
				}
			case *authreslib.DMARCResult:
				if w.method != "dmarc" || string(r.Value) != w.value || r.From != w.domain {
					t.Fatalf("result %d is dmarc=%s from=%q, want %s=%s from=%q in %q", i, r.Value, r.From, w.method, w.value, w.domain, v)
				}
			default:
				t.Fatalf("result %d is %T %+v in %q", i, r, r, v)
			}
		}
	})
}
