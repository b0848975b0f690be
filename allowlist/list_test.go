package allowlist

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// ent builds a complete entry; opts adjust it.
func ent(id, match, require string, opts ...func(*Entry)) Entry {
	e := Entry{ID: id, Match: match, Require: require, Reason: "test", Owner: "compliance@ourcorp.example", Added: NewDate(2025, 1, 1)}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func expires(y int, m time.Month, d int) func(*Entry) {
	return func(e *Entry) { e.Expires = NewDate(y, m, d) }
}

func added(y int, m time.Month, d int) func(*Entry) {
	return func(e *Entry) { e.Added = NewDate(y, m, d) }
}

func ips(p ...string) func(*Entry) { return func(e *Entry) { e.IPs = p } }

var lookupNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func lookupList(t testing.TB) *List {
	t.Helper()
	l, err := NewList([]Entry{
		ent("sec-filings", "domain:sec.gov", "dmarc"),                                                            // 0
		ent("ir-dkim", "domain:ir.example.com", "dkim"),                                                          // 1
		ent("irwire", "dkim:mailer.irwire.example", "dkim"),                                                      // 2
		ent("billing-spf", "domain:billing.example.net", "spf"),                                                  // 3
		ent("orders-ip", "ip:198.51.100.16/29", "ip"),                                                            // 4
		ent("orders-addr", "address:orders@supplier.example", "ip", ips("198.51.100.16/29", "2001:db8:51::/48")), // 5
		ent("abuse", "rcpt:abuse@ourcorp.example", "none"),                                                       // 6
		ent("postmaster", "rcpt:postmaster@ourcorp.example", "none"),                                             // 7
		ent("old-partner", "domain:partner.example", "dmarc", added(2024, 1, 1), expires(2025, 1, 1)),            // 8
		ent("newsletter", "domain:news.example", "none"),                                                         // 9
		ent("finra-dkim", "domain:finra.org", "dkim"),                                                            // 10
		ent("finra-notices", "address:notices@finra.org", "dmarc"),                                               // 11
		ent("v6-relay", "ip:2001:db8:99::/48", "ip"),                                                             // 12
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// from returns an identity with a single From address.
func from(addr string) Identity {
	return Identity{From: addr, FromDomain: addr[strings.LastIndexByte(addr, '@')+1:], FromFields: 1}
}

func with(id Identity, f func(*Identity)) Identity { f(&id); return id }

func dmarc(r Result) func(*Identity) { return func(id *Identity) { id.DMARC = r } }

func dkim(d string, r Result) func(*Identity) {
	return func(id *Identity) { id.DKIM = append(id.DKIM, DKIMResult{Domain: d, Result: r}) }
}

func spf(mailFrom string, r Result) func(*Identity) {
	return func(id *Identity) { id.MailFrom, id.SPF = mailFrom, r }
}

func client(ip string) func(*Identity) {
	return func(id *Identity) { id.ClientIP = netip.MustParseAddr(ip) }
}

func all(fs ...func(*Identity)) func(*Identity) {
	return func(id *Identity) {
		for _, f := range fs {
			f(id)
		}
	}
}

func TestLookup(t *testing.T) {
	l := lookupList(t)
	tests := []struct {
		name  string
		id    Identity
		rcpts []string
		now   time.Time // zero = lookupNow
		want  *Match    // nil = no match
	}{
		// domain: with require = dmarc
		{name: "sec.gov dmarc pass", id: with(from("filings@sec.gov"), dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},
		{name: "spoof: forged sec.gov, dmarc fail", id: with(from("filings@sec.gov"), dmarc(Fail)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "dmarc=fail"}},
		{name: "spoof: dmarc temperror", id: with(from("filings@sec.gov"), dmarc(TempError)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "dmarc=temperror"}},
		{name: "spoof: no dmarc result", id: from("filings@sec.gov"),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "dmarc=none"}},
		{name: "subdomain sub.sec.gov", id: with(from("a@sub.sec.gov"), dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "sub.sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},
		{name: "deep subdomain", id: with(from("a@x.y.sec.gov"), dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "x.y.sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},
		{name: "case and trailing dot", id: with(Identity{From: "Filings@SEC.GOV", FromDomain: "SEC.Gov.", FromFields: 1}, dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},
		{name: "look-alike sec.gov.evil.example", id: with(from("filings@sec.gov.evil.example"), dmarc(Pass))},
		{name: "look-alike evilsec.gov", id: with(from("filings@evilsec.gov"), dmarc(Pass))},
		{name: "look-alike gov", id: with(from("filings@gov"), dmarc(Pass))},
		{name: "spoof: two From fields", id: with(Identity{From: "filings@sec.gov", FromDomain: "sec.gov", FromFields: 2}, dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "2 From fields (only a message with one From can authenticate)"}},
		{name: "two From fields, none named", id: with(Identity{FromFields: 2}, dmarc(Pass))},
		{name: "domain from the address only", id: with(Identity{From: "<a@sec.gov>", FromFields: 1}, dmarc(Pass)),
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},

		// expiry
		{name: "expired entry does not match", id: with(from("a@partner.example"), dmarc(Pass))},
		{name: "expired at 00:00 UTC of expires", id: with(from("a@partner.example"), dmarc(Pass)), now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "active the day before expires", id: with(from("a@partner.example"), dmarc(Pass)), now: time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC),
			want: &Match{Entry: "old-partner", Matched: "partner.example", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},

		// domain: with require = dkim
		{name: "dkim aligned exact", id: with(from("ir@ir.example.com"), dkim("ir.example.com", Pass)),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Authenticated: true, Why: "dkim=pass d=ir.example.com"}},
		{name: "dkim aligned organizational domain", id: with(from("ir@ir.example.com"), dkim("Example.COM", Pass)),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Authenticated: true, Why: "dkim=pass d=example.com"}},
		{name: "spoof: dkim fail", id: with(from("ir@ir.example.com"), dkim("ir.example.com", Fail)),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Why: "dkim=fail d=ir.example.com"}},
		{name: "spoof: dkim pass for another domain", id: with(from("ir@ir.example.com"), all(dkim("evil.example", Pass), dmarc(Fail))),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Why: "no dkim signature aligned with ir.example.com (d=evil.example)"}},
		{name: "spoof: dkim none", id: with(from("ir@ir.example.com"), dmarc(Pass)),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Why: "dkim=none"}},
		{name: "dkim: one good signature among bad", id: with(from("ir@ir.example.com"), all(dkim("ir.example.com", Fail), dkim("evil.example", Pass), dkim("ir.example.com", Pass))),
			want: &Match{Entry: "ir-dkim", Matched: "ir.example.com", Require: "dkim", Authenticated: true, Why: "dkim=pass d=ir.example.com"}},

		// dkim: entries
		{name: "dkim entry pass, any From", id: with(from("news@issuer.example"), dkim("mailer.irwire.example", Pass)),
			want: &Match{Entry: "irwire", Matched: "mailer.irwire.example", Require: "dkim", Authenticated: true, Why: "dkim=pass d=mailer.irwire.example"}},
		{name: "spoof: dkim entry signature fails", id: with(from("news@issuer.example"), dkim("mailer.irwire.example", Fail)),
			want: &Match{Entry: "irwire", Matched: "mailer.irwire.example", Require: "dkim", Why: "dkim=fail d=mailer.irwire.example"}},
		{name: "dkim entry: subdomain signer does not match", id: with(from("news@issuer.example"), dkim("x.mailer.irwire.example", Pass))},
		{name: "dkim entry: parent signer does not match", id: with(from("news@issuer.example"), dkim("irwire.example", Pass))},
		{name: "dkim entry: two From fields do not matter", id: with(Identity{FromFields: 2}, dkim("mailer.irwire.example", Pass)),
			want: &Match{Entry: "irwire", Matched: "mailer.irwire.example", Require: "dkim", Authenticated: true, Why: "dkim=pass d=mailer.irwire.example"}},

		// domain: with require = spf
		{name: "spf aligned", id: with(from("invoice@billing.example.net"), spf("bounce@mail.billing.example.net", Pass)),
			want: &Match{Entry: "billing-spf", Matched: "billing.example.net", Require: "spf", Authenticated: true, Why: "spf=pass smtp.mailfrom=mail.billing.example.net"}},
		{name: "spf null sender uses HELO", id: with(from("invoice@billing.example.net"), all(spf("", Pass), func(id *Identity) { id.Helo = "mx.billing.example.net" })),
			want: &Match{Entry: "billing-spf", Matched: "billing.example.net", Require: "spf", Authenticated: true, Why: "spf=pass smtp.mailfrom=mx.billing.example.net"}},
		{name: "spoof: spf pass for an unaligned MAIL FROM", id: with(from("invoice@billing.example.net"), spf("bounce@esp.example", Pass)),
			want: &Match{Entry: "billing-spf", Matched: "billing.example.net", Require: "spf", Why: "spf=pass for esp.example, not aligned with billing.example.net"}},
		{name: "spoof: spf softfail", id: with(from("invoice@billing.example.net"), spf("bounce@billing.example.net", SoftFail)),
			want: &Match{Entry: "billing-spf", Matched: "billing.example.net", Require: "spf", Why: "spf=softfail"}},

		// ip
		{name: "ip entry", id: with(from("x@anything.example"), client("198.51.100.20")),
			want: &Match{Entry: "orders-ip", Matched: "198.51.100.20", Require: "ip", Authenticated: true, Why: "ip 198.51.100.20 in 198.51.100.16/29"}},
		{name: "ip entry, v4-mapped client", id: with(Identity{}, client("::ffff:198.51.100.23")),
			want: &Match{Entry: "orders-ip", Matched: "198.51.100.23", Require: "ip", Authenticated: true, Why: "ip 198.51.100.23 in 198.51.100.16/29"}},
		{name: "ip outside the prefix", id: with(Identity{}, client("198.51.100.24"))},
		{name: "ipv6 entry", id: with(Identity{}, client("2001:db8:99:1::25")),
			want: &Match{Entry: "v6-relay", Matched: "2001:db8:99:1::25", Require: "ip", Authenticated: true, Why: "ip 2001:db8:99:1::25 in 2001:db8:99::/48"}},
		{name: "address with require ip, v6", id: with(from("orders@supplier.example"), client("2001:db8:51::5")),
			want: &Match{Entry: "orders-addr", Matched: "orders@supplier.example", Require: "ip", Authenticated: true, Why: "client ip 2001:db8:51::5 in 2001:db8:51::/48"}},
		{name: "address case-insensitive", id: with(Identity{From: "ORDERS@Supplier.Example", FromFields: 1}, client("2001:db8:51::5")),
			want: &Match{Entry: "orders-addr", Matched: "orders@supplier.example", Require: "ip", Authenticated: true, Why: "client ip 2001:db8:51::5 in 2001:db8:51::/48"}},
		{name: "spoof: address from a foreign ip", id: with(from("orders@supplier.example"), client("203.0.113.9")),
			want: &Match{Entry: "orders-addr", Matched: "orders@supplier.example", Require: "ip", Why: "client ip 203.0.113.9 not in the entry's ips"}},
		{name: "other address of the domain", id: with(from("sales@supplier.example"), client("2001:db8:51::5"))},
		{name: "first authenticated entry wins", id: with(from("orders@supplier.example"), client("198.51.100.17")),
			want: &Match{Entry: "orders-ip", Matched: "198.51.100.17", Require: "ip", Authenticated: true, Why: "ip 198.51.100.17 in 198.51.100.16/29"}},

		// rcpt
		{name: "rcpt only abuse", id: with(from("spammer@evil.example"), dmarc(Fail)), rcpts: []string{"abuse@ourcorp.example"},
			want: &Match{Entry: "abuse", Matched: "abuse@ourcorp.example", Require: "none", Authenticated: true, Why: "every recipient allowlisted (require=none)"}},
		{name: "rcpt brackets and case", rcpts: []string{"<Abuse@OurCorp.Example>"},
			want: &Match{Entry: "abuse", Matched: "abuse@ourcorp.example", Require: "none", Authenticated: true, Why: "every recipient allowlisted (require=none)"}},
		{name: "rcpt all covered by two entries", rcpts: []string{"postmaster@ourcorp.example", "abuse@ourcorp.example"},
			want: &Match{Entry: "abuse", Matched: "abuse@ourcorp.example", Require: "none", Authenticated: true, Why: "every recipient allowlisted (require=none)"}},
		{name: "rcpt not every recipient", rcpts: []string{"abuse@ourcorp.example", "ceo@ourcorp.example"},
			want: &Match{Entry: "abuse", Matched: "abuse@ourcorp.example", Require: "none", Why: "only 1 of 2 recipients are allowlisted"}},
		{name: "rcpt no recipient", rcpts: []string{"ceo@ourcorp.example"}},
		{name: "forged sec.gov to abuse only: rcpt authenticates", id: with(from("filings@sec.gov"), dmarc(Fail)), rcpts: []string{"abuse@ourcorp.example"},
			want: &Match{Entry: "abuse", Matched: "abuse@ourcorp.example", Require: "none", Authenticated: true, Why: "every recipient allowlisted (require=none)"}},
		{name: "forged sec.gov to abuse and ceo: first entry reported", id: with(from("filings@sec.gov"), dmarc(Fail)), rcpts: []string{"abuse@ourcorp.example", "ceo@ourcorp.example"},
			want: &Match{Entry: "sec-filings", Matched: "sec.gov", Require: "dmarc", Why: "dmarc=fail"}},

		// require = none
		{name: "require none", id: with(from("a@news.example"), dmarc(Fail)),
			want: &Match{Entry: "newsletter", Matched: "news.example", Require: "none", Authenticated: true, Why: "require=none"}},
		{name: "require none, two From fields", id: with(Identity{From: "a@news.example", FromFields: 2}, dmarc(Fail)),
			want: &Match{Entry: "newsletter", Matched: "news.example", Require: "none", Why: "2 From fields (only a message with one From can authenticate)"}},

		// several entries
		{name: "authenticated later entry beats unauthenticated first", id: with(from("notices@finra.org"), dmarc(Pass)),
			want: &Match{Entry: "finra-notices", Matched: "notices@finra.org", Require: "dmarc", Authenticated: true, Why: "dmarc=pass"}},
		{name: "none authenticated: first entry reported", id: with(from("notices@finra.org"), dmarc(Fail)),
			want: &Match{Entry: "finra-dkim", Matched: "finra.org", Require: "dkim", Why: "dkim=none"}},
		{name: "both authenticated: first entry", id: with(from("notices@finra.org"), all(dmarc(Pass), dkim("finra.org", Pass))),
			want: &Match{Entry: "finra-dkim", Matched: "finra.org", Require: "dkim", Authenticated: true, Why: "dkim=pass d=finra.org"}},

		{name: "empty identity"},
		{name: "unlisted sender", id: with(from("a@example.org"), all(dmarc(Pass), dkim("example.org", Pass), client("192.0.2.1")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = lookupNow
			}
			got := l.Lookup(tt.id, tt.rcpts, now)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("Lookup = %+v\nwant     %+v", got, tt.want)
			}
		})
	}
}

// The decision reports a spoof as "entry X matched Y but Z" (policy.Decide).
func TestLookupSpoofReport(t *testing.T) {
	m := lookupList(t).Lookup(with(from("filings@sec.gov"), dmarc(Fail)), nil, lookupNow)
	if m == nil || m.Authenticated {
		t.Fatalf("match %+v", m)
	}
	got := fmt.Sprintf("entry %s matched %s but %s", m.Entry, m.Matched, m.Why)
	if got != "entry sec-filings matched sec.gov but dmarc=fail" {
		t.Fatal(got)
	}
}

func TestLookupNilAndEmpty(t *testing.T) {
	var l *List
	if m := l.Lookup(from("a@sec.gov"), nil, lookupNow); m != nil {
		t.Fatal(m)
	}
	e, err := NewList(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := e.Lookup(with(from("a@sec.gov"), dmarc(Pass)), []string{"x@y"}, lookupNow); m != nil {
		t.Fatal(m)
	}
}

func TestLookupConcurrent(t *testing.T) {
	l := lookupList(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 200; i++ {
				m := l.Lookup(with(from("filings@sec.gov"), dmarc(Pass)), []string{"abuse@ourcorp.example"}, lookupNow)
				if m == nil || !m.Authenticated || m.Entry != "sec-filings" {
					t.Errorf("match %+v", m)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestListAccessors(t *testing.T) {
	l := lookupList(t)
	if l.Len() != 13 || len(l.Entries()) != 13 {
		t.Fatalf("len %d", l.Len())
	}
	es := l.Entries()
	es[5].IPs[0] = "changed"
	es[0].ID = "changed"
	if e, _ := l.Entry("orders-addr"); e.IPs[0] != "198.51.100.16/29" || l.Entries()[0].ID != "sec-filings" {
		t.Fatal("Entries shares memory with the list")
	}
	exp := l.Expired(lookupNow)
	if len(exp) != 1 || exp[0].ID != "old-partner" {
		t.Fatalf("expired %v", exp)
	}
	if len(l.Expired(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))) != 0 {
		t.Fatal("expired too early")
	}
	if _, ok := l.Entry("nope"); ok {
		t.Fatal("found nope")
	}
}

func TestNewListRefuses(t *testing.T) {
	tests := []struct {
		e    Entry
		want string
	}{
		{ent("", "domain:sec.gov", "dmarc"), "entry #1: id is missing"},
		{ent("bad id", "domain:sec.gov", "dmarc"), `id "bad id"`},
		{ent("x", "", "dmarc"), "match is missing"},
		{ent("x", "sec.gov", "dmarc"), `want KIND:VALUE`},
		{ent("x", "domain:", "dmarc"), `want KIND:VALUE`},
		{ent("x", "domain:sec..gov", "dmarc"), `not a domain name`},
		{ent("x", "domain:-sec.gov", "dmarc"), `not a domain name`},
		{ent("x", "domain:sec gov", "dmarc"), `not a domain name`},
		{ent("x", "domain:bücher.example", "dmarc"), `xn--`},
		{ent("x", "domain:a@sec.gov", "dmarc"), `is an address`},
		{ent("x", "address:sec.gov", "dmarc"), `not an address`},
		{ent("x", "rcpt:abuse", "none"), `not an address`},
		{ent("x", "ip:300.1.1.1", "ip"), `not an IP address`},
		{ent("x", "ip:192.0.2.1/24", "ip"), `did you mean 192.0.2.0/24?`},
		{ent("x", "ip:192.0.2.0/24", "none"), `write require = "ip"`},
		{ent("x", "domain:sec.gov", ""), `require is missing`},
		{ent("x", "domain:sec.gov", "pass"), `want dmarc, dkim, spf, ip or none`},
		{ent("x", "domain:sec.gov", "ip"), `needs ips`},
		{ent("x", "domain:sec.gov", "ip", ips("192.0.2.0/33")), `ips: "192.0.2.0/33"`},
		{ent("x", "domain:sec.gov", "dmarc", ips("192.0.2.0/24")), `ips is only used`},
		{ent("x", "domain:sec.gov", "dmarc", func(e *Entry) { e.Added = Date{} }), `added is missing`},
		{ent("x", "domain:sec.gov", "dmarc", expires(2025, 1, 1)), `expires = 2025-01-01 is not after added = 2025-01-01`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := NewList([]Entry{tt.e})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	_, err := NewList([]Entry{ent("x", "domain:a.example", "dmarc"), ent("x", "domain:b.example", "dmarc"), ent("y", "nope", "")})
	if err == nil || !strings.Contains(err.Error(), `entry "x": id used twice (first at entry #1)`) || !strings.Contains(err.Error(), `entry "y": match = "nope"`) ||
		!strings.Contains(err.Error(), `entry "y": require is missing`) {
		t.Fatalf("all errors not reported: %v", err)
	}
}

// bench10k builds a list of 10,000 entries of every kind.
func bench10k(b *testing.B) *List {
	entries := make([]Entry, 0, 10000)
	for i := 0; len(entries) < 10000; i++ {
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			entries = append(entries, ent(fmt.Sprintf("d%d", i), fmt.Sprintf("domain:corp%d.example", i), "dmarc"))
		case 6:
			entries = append(entries, ent(fmt.Sprintf("a%d", i), fmt.Sprintf("address:ir%d@issuer%d.example", i, i), "dkim"))
		case 7:
			entries = append(entries, ent(fmt.Sprintf("k%d", i), fmt.Sprintf("dkim:mailer%d.esp.example", i), "dkim"))
		case 8:
			entries = append(entries, ent(fmt.Sprintf("i%d", i), fmt.Sprintf("ip:10.%d.%d.0/%d", i/256%256, i%256, 24+i%9), "ip"))
		case 9:
			entries = append(entries, ent(fmt.Sprintf("r%d", i), fmt.Sprintf("rcpt:abuse%d@ourcorp.example", i), "none"))
		}
	}
	l, err := NewList(entries)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func BenchmarkLookup10k(b *testing.B) {
	l := bench10k(b)
	now := lookupNow
	rcpts := []string{"ceo@ourcorp.example", "cfo@ourcorp.example"}
	cases := []struct {
		name  string
		id    Identity
		auth  bool
		match bool
	}{
		{"match-domain-dmarc-pass", with(from("news@mail.corp5002.example"), all(dmarc(Pass), dkim("corp5002.example", Pass), spf("b@corp5002.example", Pass), client("192.0.2.7"))), true, true},
		{"match-domain-spoof", with(from("news@corp5002.example"), all(dmarc(Fail), client("192.0.2.7"))), false, true},
		{"match-address-dkim", with(from("ir5006@issuer5006.example"), all(dmarc(Pass), dkim("issuer5006.example", Pass), client("192.0.2.7"))), true, true},
		{"match-dkim", with(from("x@client.example"), all(dkim("mailer5007.esp.example", Pass), client("192.0.2.7"))), true, true},
		{"match-ip", with(from("x@client.example"), client("10.19.144.1")), true, true},
		{"miss", with(from("someone@a.b.unlisted.example"), all(dmarc(Pass), dkim("unlisted.example", Pass), spf("b@unlisted.example", Pass), client("192.0.2.7"))), false, false},
	}
	for _, c := range cases {
		m := l.Lookup(c.id, rcpts, now)
		if (m != nil) != c.match || (m != nil && m.Authenticated != c.auth) {
			b.Fatalf("%s: match %+v", c.name, m)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.Lookup(c.id, rcpts, now)
			}
		})
	}
}
