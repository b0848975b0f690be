package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/daemontest"
)

// allowlistEnv copies the example list into a temp dir and writes a config naming it.
func allowlistEnv(t *testing.T) (cfg, list string) {
	t.Helper()
	dir := t.TempDir()
	list = filepath.Join(dir, "allowlist.toml")
	b, err := os.ReadFile("../../testdata/allowlist/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(list, b, 0o640)
	cfg = filepath.Join(dir, "fpsafe.toml")
	os.WriteFile(cfg, []byte("[allowlist]\nfile = \""+list+"\"\n"), 0o644)
	return cfg, list
}

// `allowlist test` explains a spoof and a genuine sender side by side.
func TestAllowlistTestSpoofAndGenuine(t *testing.T) {
	cfg, _ := allowlistEnv(t)
	rc, spoof, errs := runCmd(t, "", "allowlist", "test", "-config", cfg, "--from", "filings@sec.gov", "--ip", "203.0.113.9")
	if rc != 0 || !strings.Contains(spoof, "entry sec-filings") || !strings.Contains(spoof, "NOT authenticated (dmarc=fail): no bypass; needs dmarc=pass") {
		t.Fatalf("spoof: exit %d\n%s%s", rc, spoof, errs)
	}
	rc, genuine, _ := runCmd(t, "", "allowlist", "test", "--from", "filings@sec.gov", "--dkim", "sec.gov", "--config", cfg)
	if rc != 0 || !strings.Contains(genuine, "authenticated (dmarc=pass): BYPASS") {
		t.Fatalf("genuine: exit %d\n%s", rc, genuine)
	}
	_, lookalike, _ := runCmd(t, "", "allowlist", "test", "-config", cfg, "--from", "a@sec.gov.evil.example", "--dkim", "sec.gov.evil.example")
	if !strings.Contains(lookalike, "no entry matches") {
		t.Fatalf("look-alike:\n%s", lookalike)
	}
}

func TestAllowlistAddRemoveAudit(t *testing.T) {
	cfg, list := allowlistEnv(t)
	add := []string{"allowlist", "add", "-config", cfg, "--by", "alice", "--id", "partner", "--match", "domain:partner.example",
		"--require", "dkim", "--reason", "order confirmations", "--owner", "sales@ourcorp.example", "--expires", "2030-01-01", "--ticket", "CHG-7"}
	if rc, out, errs := runCmd(t, "", add...); rc != 0 || !strings.Contains(out, "added entry partner") {
		t.Fatalf("add: %d %s %s", rc, out, errs)
	}
	if rc, _, errs := runCmd(t, "", add...); rc != 1 || !strings.Contains(errs, "partner") {
		t.Fatalf("duplicate add: %d %s", rc, errs)
	}
	l, err := allowlist.ParseFile(list)
	if e, ok := l.Entry("partner"); err != nil || !ok || e.Ticket != "CHG-7" || e.Expires.String() != "2030-01-01" {
		t.Fatalf("entry after add: %+v %v", e, err)
	}
	if rc, _, errs := runCmd(t, "", "allowlist", "remove", "-config", cfg, "partner"); rc != 2 || !strings.Contains(errs, "--reason") {
		t.Fatalf("remove without reason: %d %s", rc, errs)
	}
	if rc, out, errs := runCmd(t, "", "allowlist", "remove", "-config", cfg, "--by", "bob", "partner", "--reason", "contract ended"); rc != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("remove: %d %s %s", rc, out, errs)
	}
	recs, err := allowlist.ReadAudit(list)
	if err != nil || len(recs) != 2 || recs[0].Who != "alice" || recs[1].Who != "bob" || recs[1].Reason != "contract ended" {
		t.Fatalf("audit %+v %v", recs, err)
	}
}

// add refuses require = "none" and entries broader than one registrable domain unless
// forced with a reason; reason and owner are required.
func TestAllowlistAddRefusesDangerous(t *testing.T) {
	cfg, _ := allowlistEnv(t)
	base := []string{"allowlist", "add", "-config", cfg, "--reason", "r", "--owner", "o"}
	for _, c := range []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"--id", "a", "--match", "domain:gov", "--require", "dmarc"}, 1, "public suffix"},
		{[]string{"--id", "b", "--match", "domain:x.example", "--require", "none"}, 1, `require = "none"`},
		{[]string{"--id", "c", "--match", "domain:x.example", "--require", "none", "--force"}, 1, "--force-reason"},
		{[]string{"--id", "d", "--match", "domain:x.example", "--require", "none", "--force", "--force-reason", "legal hold mailbox"}, 0, ""},
	} {
		rc, _, errs := runCmd(t, "", append(append([]string{}, base...), c.args...)...)
		if rc != c.rc || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d %q, want %d %q", c.args, rc, errs, c.rc, c.msg)
		}
	}
	rc, _, errs := runCmd(t, "", "allowlist", "add", "-config", cfg, "--id", "e", "--match", "domain:y.example", "--require", "dkim", "--owner", "o")
	if rc != 2 || !strings.Contains(errs, "--reason") {
		t.Errorf("add without reason: %d %s", rc, errs)
	}
}

func TestAllowlistLintExportImport(t *testing.T) {
	cfg, list := allowlistEnv(t)
	rc, out, _ := runCmd(t, "", "allowlist", "lint", "-config", cfg)
	if rc != 0 || !strings.Contains(out, `entry "abuse-desk": require = "none"`) {
		t.Fatalf("lint: %d\n%s", rc, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[[entry]]\nid = \"g\"\nmatch = \"domain:gov\"\nrequire = \"dmarc\"\nadded = 2026-01-01\n"), 0o644)
	if rc, out, _ := runCmd(t, "", "allowlist", "lint", "-config", cfg, bad); rc != 1 || !strings.Contains(out, "error") {
		t.Fatalf("lint of a bad file: %d\n%s", rc, out)
	}
	rc, exported, errs := runCmd(t, "", "allowlist", "export", "-config", cfg)
	if rc != 0 {
		t.Fatalf("export: %s", errs)
	}
	// export, then import into an empty list: the same entries come back
	dump := filepath.Join(t.TempDir(), "dump.toml")
	os.WriteFile(dump, []byte(exported), 0o644)
	os.WriteFile(list, nil, 0o640)
	if rc, out, errs := runCmd(t, "", "allowlist", "import", "-config", cfg, dump, "--reason", "migration"); rc != 0 {
		t.Fatalf("import: %s %s", out, errs)
	}
	a, _ := allowlist.ParseFile("../../testdata/allowlist/example.toml")
	b, err := allowlist.ParseFile(list)
	if err != nil || a.Len() != b.Len() {
		t.Fatalf("round trip: %d vs %d entries, %v", a.Len(), b.Len(), err)
	}
	for _, e := range a.Entries() {
		f, ok := b.Entry(e.ID)
		e.Line, f.Line = 0, 0
		if !ok || strings.Join(e.IPs, ",") != strings.Join(f.IPs, ",") || e.Match != f.Match || e.Require != f.Require ||
			e.Reason != f.Reason || e.Owner != f.Owner || e.Added != f.Added || e.Expires != f.Expires || e.Ticket != f.Ticket {
			t.Errorf("entry %s changed in the round trip:\n%+v\n%+v", e.ID, e, f)
		}
	}
}

// export from a file store, import into Redis, export again: the same list (lossless), and
// `allowlist test` answers the same from Redis.
func TestAllowlistFileToRedis(t *testing.T) {
	daemontest.Require(t, "redis-server")
	r := daemontest.StartRedis(t)
	fileCfg, _ := allowlistEnv(t)
	redisCfg := filepath.Join(t.TempDir(), "redis.toml")
	os.WriteFile(redisCfg, []byte("[allowlist]\nredis = \"redis://"+r.Addr+"/0\"\nprefix = \"test:allowlist\"\n"), 0o644)

	rc, fromFile, errs := runCmd(t, "", "allowlist", "export", "-config", fileCfg)
	if rc != 0 {
		t.Fatal(errs)
	}
	dump := filepath.Join(t.TempDir(), "dump.toml")
	os.WriteFile(dump, []byte(fromFile), 0o644)
	if rc, out, errs := runCmd(t, "", "allowlist", "import", "-config", redisCfg, dump, "--reason", "move to redis", "--by", "migration"); rc != 0 {
		t.Fatalf("import into redis: %s %s", out, errs)
	}
	rc, fromRedis, errs := runCmd(t, "", "allowlist", "export", "-config", redisCfg)
	if rc != 0 {
		t.Fatal(errs)
	}
	body := func(s string) string { _, b, _ := strings.Cut(s, "\n"); return b } // drop the "exported from" comment
	a, _ := allowlist.Parse(body(fromFile), "file")
	b, err := allowlist.Parse(body(fromRedis), "redis")
	if err != nil || a.Len() != b.Len() || a.Len() == 0 {
		t.Fatalf("redis export: %v (%d vs %d entries)\n%s", err, a.Len(), b.Len(), fromRedis)
	}
	for _, e := range a.Entries() {
		f, _ := b.Entry(e.ID)
		e.Line, f.Line = 0, 0
		if fmt.Sprintf("%+v", e) != fmt.Sprintf("%+v", f) {
			t.Errorf("entry %s changed:\n%+v\n%+v", e.ID, e, f)
		}
	}
	_, out, _ := runCmd(t, "", "allowlist", "test", "-config", redisCfg, "--from", "filings@sec.gov", "--dkim", "sec.gov")
	if !strings.Contains(out, "BYPASS") {
		t.Fatalf("test against redis:\n%s", out)
	}
}
