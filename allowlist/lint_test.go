package allowlist

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLint(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	l, err := NewList([]Entry{
		ent("clean", "domain:clean.example", "dmarc", expires(2026, 1, 1)),
		ent("no-reason", "domain:r.example", "dmarc", func(e *Entry) { e.Reason = " " }),
		ent("no-owner", "domain:o.example", "dmarc", func(e *Entry) { e.Owner = "" }),
		ent("expired", "domain:old.example", "dmarc", expires(2025, 5, 1)),
		ent("expiring", "domain:soon.example", "dmarc", expires(2025, 6, 10)),
		ent("none", "address:ceo@partner.example", "none"),
		ent("abuse", "rcpt:abuse@ourcorp.example", "none"),
		ent("gov", "domain:gov", "spf"),
		ent("co-uk", "domain:co.uk", "dmarc"),
		ent("github-io", "domain:github.io", "dkim"),
		ent("parent", "domain:example.gov", "dmarc"),
		ent("child-same", "domain:sub.example.gov", "dmarc"),
		ent("child-stronger", "domain:other.example.gov", "dkim"),
		ent("addr-under", "address:a@deep.sub.example.gov", "dmarc"),
		ent("dup", "domain:Example.GOV.", "spf"),
		ent("weak-parent", "domain:weak.example", "none"),
		ent("under-weak", "domain:x.weak.example", "spf"),
		ent("short-parent", "domain:short.example", "dmarc", expires(2025, 12, 1)),
		ent("outlives-parent", "domain:a.short.example", "dmarc"),
		ent("net", "ip:198.51.100.0/24", "ip"),
		ent("host", "ip:198.51.100.7", "ip"),
		ent("wide", "ip:10.0.0.0/8", "ip"),
		ent("wide-ips", "domain:erp.example", "ip", ips("2001:db8::/32")),
		ent("ips-parent", "domain:ips.example", "ip", ips("192.0.2.0/24")),
		ent("ips-child-in", "domain:a.ips.example", "ip", ips("192.0.2.8/29")),
		ent("ips-child-out", "domain:b.ips.example", "ip", ips("203.0.113.0/24")),
		ent("expired-parent", "domain:gone.example", "none", added(2024, 1, 1), expires(2025, 1, 1)),
		ent("under-expired", "domain:a.gone.example", "dmarc"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range Lint(l, now) {
		got[f.Entry] = append(got[f.Entry], string(f.Severity)+": "+f.Message)
	}
	want := map[string][]string{
		"no-reason":       {"error: reason is missing"},
		"no-owner":        {"error: owner is missing"},
		"expired":         {"warning: expired on 2025-05-01"},
		"expiring":        {"warning: expires on 2025-06-10"},
		"none":            {`warning: require = "none": anyone can forge ceo@partner.example`},
		"abuse":           {`warning: require = "none": every message to abuse@ourcorp.example`},
		"gov":             {"error: domain:gov is a public suffix"},
		"co-uk":           {"error: domain:co.uk is a public suffix"},
		"github-io":       {"error: domain:github.io is a public suffix"},
		"child-same":      {`warning: shadowed by entry "parent" (domain:example.gov, entry #11)`},
		"addr-under":      {`warning: shadowed by entry "child-same"`},
		"dup":             {`warning: domain:example.gov is also matched by entry "parent" (entry #11)`},
		"weak-parent":     {`warning: require = "none"`},
		"under-weak":      {`warning: shadowed by entry "weak-parent"`},
		"host":            {`warning: shadowed by entry "net"`},
		"wide":            {"warning: ip:10.0.0.0/8 covers 16777216 addresses"},
		"wide-ips":        {"warning: ips 2001:db8::/32 covers 2^96 addresses"},
		"ips-child-in":    {`warning: shadowed by entry "ips-parent"`},
		"expired-parent":  {"warning: expired on 2025-01-01", `warning: require = "none"`},
		"clean":           nil,
		"child-stronger":  nil,
		"outlives-parent": nil,
		"ips-child-out":   nil,
		"under-expired":   nil,
		"parent":          nil,
		"net":             nil,
		"short-parent":    nil,
		"ips-parent":      nil,
	}
	for id, w := range want {
		g := got[id]
		if len(g) != len(w) {
			t.Errorf("%s: got %q, want %q", id, g, w)
			continue
		}
		for i := range w {
			if !strings.HasPrefix(g[i], w[i]) {
				t.Errorf("%s: got %q, want prefix %q", id, g[i], w[i])
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected findings for %s: %q", id, got[id])
		}
	}
}

func TestLintFileFindings(t *testing.T) {
	text := `[[entry]]
id = "a"
match = "domain:a.example"
require = "none"
reason = "r"
owner = ""
added = 2025-01-01
`
	l, err := Parse(text, "allow.toml")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, f := range Lint(l, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) {
		s = append(s, f.String())
	}
	want := []string{
		`allow.toml:1: error: entry "a": owner is missing: name who answers for this entry`,
		`allow.toml:1: warning: entry "a": require = "none": anyone can forge a.example and bypass quarantine; require dmarc, dkim, spf or ip instead`,
	}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("got  %q\nwant %q", s, want)
	}
	if Lint(nil, time.Now()) != nil {
		t.Fatal("nil list")
	}
	if got := (Finding{Severity: SeverityWarning, Line: 3, Message: "m"}).String(); got != "line 3: warning: m" {
		t.Fatal(got)
	}
}
