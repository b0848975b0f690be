package allowlist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	goodV1 = `# managed by compliance
[[entry]]
id      = "sec-filings"
match   = "domain:sec.gov"
require = "dmarc"
reason  = "regulator"
owner   = "compliance@ourcorp.example"
added   = 2025-01-31
`
	goodV2 = goodV1 + `
[[entry]]
id      = "irwire"
match   = "dkim:mailer.irwire.example"
require = "dkim"
reason  = "IR releases"
owner   = "ir@ourcorp.example"
added   = 2025-02-01
`
	// An edit with a typo in its second entry.
	badV2 = goodV1 + `
[[entry]]
id      = "irwire"
match   = "dkim:mailer.irwire.example"
require = "dkim"
reasn   = "IR releases"
owner   = "ir@ourcorp.example"
added   = 2025-02-01
`
	goodV3 = goodV2 + `
[[entry]]
id      = "abuse"
match   = "rcpt:abuse@ourcorp.example"
require = "none"
reason  = "abuse desk"
owner   = "soc@ourcorp.example"
added   = 2025-02-02
`
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T, text string) (*FileStore, string, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "allowlist.toml")
	writeFile(t, path, text)
	var logs syncBuffer
	s, err := NewFileStore(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, path, &logs
}

var secPass = Identity{From: "a@sec.gov", FromDomain: "sec.gov", FromFields: 1, DMARC: Pass}

func TestFileStoreReload(t *testing.T) {
	s, path, logs := newStore(t, goodV1)
	first := s.Snapshot()
	if first.Len() != 1 || s.LastError() != nil || s.LoadedAt().IsZero() {
		t.Fatalf("initial load: %d entries, err %v", first.Len(), s.LastError())
	}
	if m := s.Lookup(secPass, nil, time.Now()); m == nil || !m.Authenticated {
		t.Fatalf("lookup %+v", m)
	}
	loadedAt := s.LoadedAt()

	// A bad edit is refused with its line; the last good list stays.
	writeFile(t, path, badV2)
	err := s.Reload()
	want := path + `:14: entry "irwire": unknown key "reasn"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Reload = %v, want %q", err, want)
	}
	if s.Snapshot() != first || s.LastError() == nil || !s.LoadedAt().Equal(loadedAt) {
		t.Fatal("bad edit replaced the list")
	}
	if m := s.Lookup(secPass, nil, time.Now()); m == nil || !m.Authenticated {
		t.Fatalf("lookup after bad edit %+v", m)
	}
	if !strings.Contains(logs.String(), "last good list stays active") || !strings.Contains(logs.String(), "allowlist.toml:14") {
		t.Fatalf("log:\n%s", logs)
	}

	// A good edit replaces it.
	writeFile(t, path, goodV2)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Snapshot().Len() != 2 || s.LastError() != nil || s.LoadedAt().Before(loadedAt) {
		t.Fatalf("good edit: %d entries, err %v", s.Snapshot().Len(), s.LastError())
	}

	// A vanished file keeps the list too.
	os.Remove(path)
	if err := s.Reload(); err == nil || s.Snapshot().Len() != 2 {
		t.Fatalf("missing file: %v", err)
	}
}

func TestNewFileStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewFileStore(filepath.Join(dir, "missing.toml"), nil); err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, badV2)
	if _, err := NewFileStore(bad, nil); err == nil || !strings.Contains(err.Error(), "bad.toml:14:") {
		t.Fatalf("bad file: %v", err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFileStoreRun(t *testing.T) {
	s, path, _ := newStore(t, goodV1)
	s.interval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Lookups keep running while the snapshot is swapped (for the race detector).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if m := s.Lookup(secPass, []string{"abuse@ourcorp.example"}, time.Now()); m == nil || !m.Authenticated {
				t.Errorf("lookup %+v", m)
				return
			}
		}
	})

	writeFile(t, path, goodV2)
	waitFor(t, "good edit", func() bool { return s.Snapshot().Len() == 2 })

	writeFile(t, path, badV2+"# padding to change the size\n")
	waitFor(t, "bad edit refused", func() bool { return s.LastError() != nil })
	if s.Snapshot().Len() != 2 || !strings.Contains(s.LastError().Error(), ":14:") {
		t.Fatalf("after bad edit: %d entries, %v", s.Snapshot().Len(), s.LastError())
	}

	writeFile(t, path, goodV3)
	waitFor(t, "fixed edit", func() bool { return s.Snapshot().Len() == 3 && s.LastError() == nil })

	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFileStoreAddRemove(t *testing.T) {
	example, err := os.ReadFile("../testdata/allowlist/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, path, _ := newStore(t, string(example))
	s.now = func() time.Time { return time.Date(2025, 6, 1, 9, 30, 0, 0, time.UTC) }
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}

	add := Entry{
		ID: "finra", Match: "domain:finra.org", Require: "dkim",
		Reason:  `FINRA notices — "must" arrive` + "\n\tsecond line \\ ok",
		Owner:   "compliance@ourcorp.example",
		Expires: NewDate(2026, 6, 1), Ticket: "COMP-2001",
	}
	if err := s.Add(add, "alice"); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Snapshot().Entry("finra")
	if !ok || got.Reason != add.Reason || got.Added != NewDate(2025, 6, 1) || got.Expires != add.Expires || got.Ticket != "COMP-2001" {
		t.Fatalf("added %+v", got)
	}
	if m := s.Lookup(Identity{From: "n@finra.org", FromFields: 1, DKIM: []DKIMResult{{Domain: "finra.org", Result: Pass}}}, nil, s.now()); m == nil || m.Entry != "finra" || !m.Authenticated {
		t.Fatalf("lookup %+v", m)
	}
	text, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(text), string(example)) {
		t.Fatal("Add did not keep the file as it was")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o604 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if err := s.Add(ent("more", "address:ir@issuer.example", "dmarc"), "alice"); err != nil {
		t.Fatal(err)
	}

	// Refusals change nothing.
	for _, c := range []struct {
		e    Entry
		who  string
		want string
	}{
		{add, "alice", `id used twice`},
		{ent("x", "domain:x.example", "dmarc"), "", "who is required"},
		{ent("x", "domain:x.example", "dmarc", func(e *Entry) { e.Owner = "" }), "alice", "owner is missing"},
		{ent("x", "domain:x.example", "dmarc", func(e *Entry) { e.Reason = "" }), "alice", "reason is missing"},
		{ent("x", "domain:x.example", "dmarc", expires(2025, 6, 1)), "alice", "already past"},
		{ent("x", "domain:x.example", "maybe"), "alice", "want dmarc, dkim"},
	} {
		if err := s.Add(c.e, c.who); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%s, %q) = %v, want %q", c.e.ID, c.who, err, c.want)
		}
	}
	if err := s.Remove("nope", "bob", "x"); err == nil {
		t.Error("removed a missing entry")
	}
	if err := s.Remove("finra", "bob", ""); err == nil {
		t.Error("removed without a reason")
	}

	// Remove one in the middle, the first and the last.
	for _, id := range []string{"supplier-orders", "sec-filings", "more"} {
		if err := s.Remove(id, "bob", "contract ended"); err != nil {
			t.Fatal(id, err)
		}
	}
	var ids []string
	for _, e := range s.Snapshot().Entries() {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "ir-distributor,supplier-account-manager,abuse-desk,finra" {
		t.Fatalf("left %v", ids)
	}
	text, _ = os.ReadFile(path)
	if !strings.HasPrefix(string(text), "# fpsafe allowlist — example") || !strings.Contains(string(text), "# The abuse desk must see") ||
		strings.Contains(string(text), "198.51.100.16/29\"\nrequire") || strings.Contains(string(text), "\n\n\n") {
		t.Fatalf("file after removals:\n%s", text)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o604 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(matches) > 0 {
		t.Fatalf("temporary files left: %v", matches)
	}

	// The audit trail, read back.
	recs, err := ReadAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, r := range recs {
		trail = append(trail, r.Action+" "+r.ID+" by "+r.Who+": "+r.Reason)
		if r.Entry == nil || r.Entry.ID != r.ID || !r.Time.Equal(s.now()) {
			t.Errorf("record %+v", r)
		}
	}
	wantTrail := []string{
		"add finra by alice: " + add.Reason,
		"add more by alice: test",
		"remove supplier-orders by bob: contract ended",
		"remove sec-filings by bob: contract ended",
		"remove more by bob: contract ended",
	}
	if strings.Join(trail, "\n") != strings.Join(wantTrail, "\n") {
		t.Fatalf("trail:\n%s\nwant:\n%s", strings.Join(trail, "\n"), strings.Join(wantTrail, "\n"))
	}
	if recs[2].Entry.Match != "ip:198.51.100.16/29" || recs[2].Entry.Owner != "procurement@ourcorp.example" {
		t.Errorf("removed entry not recorded: %+v", recs[2].Entry)
	}
	// It is JSON lines with the documented keys.
	f, err := os.Open(AuditPath(path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		for _, k := range []string{"time", "who", "action", "id", "entry", "reason"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d has no %q: %s", n+1, k, sc.Bytes())
			}
		}
	}
}

func TestFileStoreImportAndEmpty(t *testing.T) {
	s, path, _ := newStore(t, "")
	if s.Snapshot().Len() != 0 {
		t.Fatal("empty file")
	}
	es := []Entry{ent("a", "domain:a.example", "dmarc"), ent("b", "ip:192.0.2.1", "ip")}
	if err := s.Import(es, "carol", ""); err == nil {
		t.Fatal("import without reason")
	}
	if err := s.Import(append(es, ent("a", "domain:c.example", "dmarc")), "carol", "migration"); err == nil {
		t.Fatal("import with a duplicate id")
	}
	if recs, _ := ReadAudit(path); len(recs) != 0 {
		t.Fatalf("refused import audited: %v", recs)
	}
	if err := s.Import(es, "carol", "migration from the old gateway"); err != nil {
		t.Fatal(err)
	}
	if s.Snapshot().Len() != 2 {
		t.Fatalf("%d entries", s.Snapshot().Len())
	}
	recs, err := ReadAudit(path)
	if err != nil || len(recs) != 2 || recs[0].Action != AuditImport || recs[1].ID != "b" || recs[1].Reason != "migration from the old gateway" {
		t.Fatalf("%+v %v", recs, err)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.Remove(id, "carol", "test"); err != nil {
			t.Fatal(err)
		}
	}
	if text, _ := os.ReadFile(path); strings.TrimSpace(string(text)) != "" || s.Snapshot().Len() != 0 {
		t.Fatalf("left %q", text)
	}
}

func TestFileStoreRefusesRewriteOfInvalidFile(t *testing.T) {
	s, path, _ := newStore(t, goodV1)
	writeFile(t, path, badV2)
	err := s.Add(ent("x", "domain:x.example", "dmarc"), "alice")
	if err == nil || !strings.Contains(err.Error(), "fix it before") || !strings.Contains(err.Error(), ":14:") {
		t.Fatalf("Add on an invalid file: %v", err)
	}
	if err := s.Remove("sec-filings", "alice", "x"); err == nil {
		t.Fatal("Remove on an invalid file")
	}
	if text, _ := os.ReadFile(path); string(text) != badV2 {
		t.Fatal("invalid file rewritten")
	}
	if recs, _ := ReadAudit(path); len(recs) != 0 {
		t.Fatalf("audited: %v", recs)
	}
}

func TestRenderEntryRoundTrip(t *testing.T) {
	e := ent("x", "address:a@b.example", "ip", ips("192.0.2.0/24", "2001:db8::/48"), expires(2026, 1, 1),
		func(e *Entry) { e.Reason, e.Ticket = "quote \" backslash \\ ctl \x01 del \x7f é", "T-1" })
	l, err := Parse(renderEntry(&e), "r.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !sameEntries(l.Entries(), []Entry{e}) {
		t.Fatalf("%+v\n%+v", l.Entries()[0], e)
	}
}
