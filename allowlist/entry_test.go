package allowlist

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every testdata/allowlist/bad-*.toml must be refused with the error in its .expected-error.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("../testdata/allowlist/bad-*.toml")
	if len(files) < 10 {
		t.Fatalf("found %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".expected-error")
			if err != nil {
				t.Fatal(err)
			}
			l, err := ParseFile(f)
			if err == nil {
				t.Fatalf("accepted %d entries", l.Len())
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Fatalf("error %q\nwant it to contain %q", err, strings.TrimSpace(string(want)))
			}
		})
	}
}

func TestExampleFile(t *testing.T) {
	l, err := ParseFile("../testdata/allowlist/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 5 || l.Source() != "../testdata/allowlist/example.toml" {
		t.Fatalf("%d entries from %q", l.Len(), l.Source())
	}
	e, ok := l.Entry("sec-filings")
	if !ok || e.Match != "domain:sec.gov" || e.Require != RequireDMARC || e.Added != NewDate(2025, 1, 31) ||
		e.Expires != NewDate(2027, 1, 31) || e.Ticket != "COMP-1042" || e.Line != 43 {
		t.Fatalf("sec-filings %+v", e)
	}
	if e, _ := l.Entry("supplier-account-manager"); len(e.IPs) != 2 {
		t.Fatalf("ips %v", e.IPs)
	}
	// Only the deliberate abuse@ warning.
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	fs := Lint(l, now)
	if len(fs) != 1 || fs[0].Entry != "abuse-desk" || fs[0].Severity != SeverityWarning {
		t.Fatalf("lint %v", fs)
	}
	// Every kind of entry in it works.
	for _, c := range []struct {
		id   Identity
		rcpt []string
		want string
	}{
		{with(from("notice@sec.gov"), dmarc(Pass)), nil, "sec-filings"},
		{with(from("pr@issuer.example"), dkim("mailer.irwire.example", Pass)), nil, "ir-distributor"},
		{with(from("erp@supplier.example"), client("198.51.100.21")), nil, "supplier-orders"},
		{with(from("orders@supplier.example"), client("2001:db8:51:7::1")), nil, "supplier-account-manager"},
		{with(from("x@evil.example"), dmarc(Fail)), []string{"abuse@ourcorp.example"}, "abuse-desk"},
	} {
		m := l.Lookup(c.id, c.rcpt, now)
		if m == nil || !m.Authenticated || m.Entry != c.want {
			t.Errorf("%s: got %+v", c.want, m)
		}
	}
}

func TestParseLines(t *testing.T) {
	text := `# comment
[[entry]]
id = "a"
match = "domain:a.example"
require = "dmarc"
reason = """
[[entry]]
not a header: inside a multi-line string
"""
owner = "o"
added = 2025-01-01

  [[entry]]   # indented, with a comment
id = "b"
match = "domain:b.example"
require = "dmarc"
reason = "r"
owner = "o"
added = "2025-01-01"
expires = 2026-01-01T00:00:00
`
	l, err := Parse(text, "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	es := l.Entries()
	if es[0].Line != 2 || es[1].Line != 13 || !strings.Contains(es[0].Reason, "not a header") || es[1].Expires != NewDate(2026, 1, 1) {
		t.Fatalf("%+v", es)
	}

	// A later invalid entry is reported at its own header.
	bad := text + `
[[entry]]
id = "c"
match = "domain:c.example"
require = "dmarc"
reason = "r"
owner = "o"
added = 2025-01-01
expires = 2024-01-01
`
	if _, err := Parse(bad, "x.toml"); err == nil || !strings.HasPrefix(err.Error(), `x.toml:22: entry "c": expires = 2024-01-01 is not after`) {
		t.Fatalf("err %v", err)
	}

	// Inline tables have no header lines: errors name the entry number instead.
	inline := `entry = [ { id = "a", match = "domain:a.example", require = "dmarc", reason = "r", owner = "o", added = 2025-01-01 },
  { id = "b", match = "nope", require = "dmarc", reason = "r", owner = "o", added = 2025-01-01 } ]`
	if _, err := Parse(inline, "i.toml"); err == nil || !strings.HasPrefix(err.Error(), `i.toml: entry "b": match = "nope"`) {
		t.Fatalf("err %v", err)
	}

	for _, c := range []struct{ text, want string }{
		{"", ""},
		{"# only comments\n", ""},
		{"version = 2\n", `x.toml:1: unknown key "version"`},
		{"[[entry]]\nid = \"a\"\nID = \"b\"\n", `x.toml:3: entry "a": unknown key "ID"`},
		{"[[entry]]\nid = \"a\"\n[entry.extra]\nx = 1\n", `x.toml:3: entry "a": unknown key "extra"`},
		{"[[entry]]\nid = \"a\"\nadded = 2025-01-01T10:00:00Z\n", `x.toml:3: entry "a": added: 2025-01-01T10:00:00Z has a time of day`},
		{"[[entry]]\nid = \"a\"\nadded = 5\n", `x.toml:3: entry "a": added: 5 is not a date`},
		{"[entry]\nid = \"a\"\n", `x.toml:1: write entries as [[entry]] tables`},
		{"# x\nentry = 5\n", `x.toml:2: write entries as [[entry]] tables`},
	} {
		l, err := Parse(c.text, "x.toml")
		switch {
		case c.want == "" && (err != nil || l.Len() != 0):
			t.Errorf("%q: %v", c.text, err)
		case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
			t.Errorf("%q: err %v, want %q", c.text, err, c.want)
		}
	}
}

func TestParseFileMissing(t *testing.T) {
	if _, err := ParseFile(filepath.Join(t.TempDir(), "nope.toml")); err == nil {
		t.Fatal("no error")
	}
}

func TestDate(t *testing.T) {
	d, err := ParseDate("2025-01-31")
	if err != nil || d != NewDate(2025, 1, 31) || d.String() != "2025-01-31" || !d.Time().Equal(time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%v %v", d, err)
	}
	if _, err := ParseDate("31/01/2025"); err == nil {
		t.Fatal("accepted 31/01/2025")
	}
	if DateOf(time.Date(2025, 1, 31, 23, 0, 0, 0, time.FixedZone("x", -5*3600))) != NewDate(2025, 2, 1) {
		t.Fatal("DateOf is not UTC")
	}
	e := ent("x", "domain:a.example", "dmarc", expires(2026, 1, 1))
	b, err := json.Marshal(e)
	if err != nil || !strings.Contains(string(b), `"added":"2025-01-01","expires":"2026-01-01"`) {
		t.Fatalf("%s %v", b, err)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back.Added != e.Added || back.Expires != e.Expires {
		t.Fatalf("%+v %v", back, err)
	}
	e.Expires = Date{}
	if b, _ := json.Marshal(e); strings.Contains(string(b), "expires") {
		t.Fatalf("zero expires marshalled: %s", b)
	}
	if !(&Entry{Expires: NewDate(2025, 1, 1)}).Expired(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		(&Entry{Expires: NewDate(2025, 1, 1)}).Expired(time.Date(2024, 12, 31, 23, 59, 0, 0, time.UTC)) || (&Entry{}).Expired(time.Now()) {
		t.Fatal("Expired")
	}
}
