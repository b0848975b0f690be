package allowlist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fpsafe/fpsafe/internal/daemontest"
)

// testRedis is a real redis-server on 127.0.0.1, on a free port, with its state in a temp
// dir; it can be killed and started again on the same port.
type testRedis struct {
	t        *testing.T
	bin, dir string
	port     int
	password string
	args     []string
	proc     *daemontest.Process
}

// newTestRedis prepares a redis-server without starting it. persist keeps its data across
// a restart (append-only file, synced at every write). extra are more arguments.
func newTestRedis(t *testing.T, persist bool, extra ...string) *testRedis {
	t.Helper()
	r := &testRedis{t: t, bin: daemontest.Require(t, "redis-server"), dir: t.TempDir(), port: daemontest.FreePort(t)}
	r.args = []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir, "--save", "",
		"--daemonize", "no", "--logfile", ""}
	if persist {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	for i, a := range extra {
		if a == "--requirepass" && i+1 < len(extra) {
			r.password = extra[i+1]
		}
	}
	r.args = append(r.args, extra...)
	return r
}

// startTestRedis starts a fresh redis-server; see newTestRedis.
func startTestRedis(t *testing.T, persist bool, extra ...string) *testRedis {
	t.Helper()
	r := newTestRedis(t, persist, extra...)
	r.start()
	return r
}

func (r *testRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// url is the store URL, with the server's password if it has one.
func (r *testRedis) url() string {
	if r.password != "" {
		return "redis://:" + r.password + "@" + r.addr() + "/0"
	}
	return "redis://" + r.addr() + "/0"
}

func (r *testRedis) start() {
	r.t.Helper()
	r.proc = daemontest.Start(r.t, "redis-server", exec.Command(r.bin, r.args...))
	daemontest.WaitTCP(r.t, r.proc, r.addr(), 10*time.Second)
}

// kill ends redis-server with SIGKILL, as a crash would.
func (r *testRedis) kill() {
	r.t.Helper()
	syscall.Kill(-r.proc.Cmd.Process.Pid, syscall.SIGKILL)
	redisWait(r.t, "redis-server to die", r.proc.Exited)
}

// client is a plain client to edit the data behind the store's back.
func (r *testRedis) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr(), Password: r.password, MaxRetries: -1})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// redisLog is a log sink safe for concurrent writes.
type redisLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *redisLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *redisLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *redisLog) count(s string) int { return strings.Count(l.String(), s) }

// redisWait polls cond for up to 15 s.
func redisWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newRedisTestStore opens a store on url with prefix "t" and a debug log.
func newRedisTestStore(t *testing.T, url string, refresh time.Duration) (*RedisStore, *redisLog) {
	t.Helper()
	lg := &redisLog{}
	log := slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := NewRedisStore(context.Background(), StoreConfig{Redis: url, Prefix: "t", Refresh: refresh}, log)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("store log:\n%s", lg.String())
		}
	})
	return s, lg
}

// runRedisStore runs s.Run until the test ends.
func runRedisStore(t *testing.T, s *RedisStore) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitSubscribed waits until n clients listen on the store's channel.
func waitSubscribed(t *testing.T, c *redis.Client, n int64) {
	t.Helper()
	redisWait(t, "the store to subscribe", func() bool {
		m, err := c.PubSubNumSub(context.Background(), "t:changed").Result()
		return err == nil && m["t:changed"] >= n
	})
}

// waitSettled waits until the store has subscribed and done the reload that follows, so
// that LoadedAt stays put until something changes.
func waitSettled(t *testing.T, lg *redisLog) {
	t.Helper()
	redisWait(t, "the reload after subscribing", func() bool {
		_, after, ok := strings.Cut(lg.String(), "subscribed to redis changes")
		return ok && (strings.Contains(after, "allowlist: unchanged") || strings.Contains(after, "allowlist loaded"))
	})
}

func redisEnt(id, match, require string) Entry {
	return Entry{ID: id, Match: match, Require: require, Reason: "reason of " + id, Owner: "compliance@ourcorp.example",
		Added: NewDate(2025, 1, 1)}
}

func dmarcPass(addr string) Identity {
	return Identity{From: addr, FromDomain: addr[strings.LastIndexByte(addr, '@')+1:], FromFields: 1, DMARC: Pass}
}

func entryJSON(t *testing.T, e Entry) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:s3cret@redis.example:6379/1", "redis://:xxxxx@redis.example:6379/1"},
		{"rediss://fpsafe:s3cret@redis.example:6380/2", "rediss://fpsafe:xxxxx@redis.example:6380/2"},
		{"rediss://fpsafe:p%40ss%2Fword@redis.example", "rediss://fpsafe:xxxxx@redis.example"},
		{"redis://fpsafe@redis.example:6379", "redis://fpsafe@redis.example:6379"},
		{"redis://:s3cret@s1:26379,s2:26379/0?master_name=mymaster", "redis://:xxxxx@s1:26379,s2:26379/0?master_name=mymaster"},
		{"redis://h:6379?sentinel_password=s3cret&dial_timeout=3", "redis://h:6379?dial_timeout=3&sentinel_password=xxxxx"},
		// Not parseable: the whole userinfo after the user, and the query, go.
		{"redis://fpsafe:s3cr%zzet@h:6379/0", "redis://fpsafe:xxxxx@h:6379/0"},
		{"redis://s3cr%zzet@h:6379/0", "redis://xxxxx@h:6379/0"},
		{"redis://h:6379/0?password=s3cr%zz et\x7f", "redis://h:6379/0?xxxxx"},
		{"", ""},
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(RedactURL(c.in), "s3cr") {
			t.Errorf("RedactURL(%q) keeps the secret", c.in)
		}
	}
}

func TestRedisOptions(t *testing.T) {
	o, secrets, err := redisOptions("redis://fpsafe:s3cret@127.0.0.1:6379/3")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Addrs) != 1 || o.Addrs[0] != "127.0.0.1:6379" || o.DB != 3 || o.Username != "fpsafe" || o.Password != "s3cret" ||
		!o.ContextTimeoutEnabled || o.DialTimeout != 2*time.Second || o.MaxRetries != 1 || o.PoolSize != 4 || o.MasterName != "" {
		t.Errorf("standalone options: %+v", o)
	}
	if len(secrets) != 1 || secrets[0] != "s3cret" {
		t.Errorf("secrets = %q", secrets)
	}
	if o, _, err := redisOptions("rediss://h:6380/0?dial_timeout=5s&pool_size=9"); err != nil || o.TLSConfig == nil ||
		o.DialTimeout != 5*time.Second || o.PoolSize != 9 {
		t.Errorf("TLS options: %+v, %v", o, err)
	}
	if o, _, err := redisOptions("redis://:pw@n1:7000,n2:7001?addr=n3:7002"); err != nil ||
		strings.Join(o.Addrs, " ") != "n1:7000 n2:7001 n3:7002" || o.MasterName != "" || o.Password != "pw" {
		t.Errorf("cluster options: %+v, %v", o, err)
	}
	if o, _, err := redisOptions("redis://:pw@s1:26379,s2:26379/2?master_name=mymaster"); err != nil ||
		strings.Join(o.Addrs, " ") != "s1:26379 s2:26379" || o.MasterName != "mymaster" || o.DB != 2 {
		t.Errorf("sentinel options: %+v, %v", o, err)
	}

	if o, _, err := redisOptions("redis://n1:7000?cluster=true"); err != nil || !o.IsClusterMode {
		t.Errorf("cluster=true: %+v, %v", o, err)
	}

	// Configuration errors are errors, and never show the password.
	for _, u := range []string{
		"redis://u:Sup3rS3cret@h:6379/notanumber",
		"redis://u:Sup3rS3cret%zz@h:6379/0",
		"http://u:Sup3rS3cret@h:6379/0",
		"redis://u:Sup3rS3cret@h:6379/0?no_such_option=1",
		"redis://u:Sup3rS3cret@h1:6379,bad/0",
		"redis://u:Sup3rS3cret@/0",
		"",
	} {
		_, err := NewRedisStore(context.Background(), StoreConfig{Redis: u, Prefix: "t", Refresh: time.Minute}, nil)
		if err == nil {
			t.Errorf("%q: no error", u)
			continue
		}
		if strings.Contains(err.Error(), "Sup3rS3cret") {
			t.Errorf("%q: error shows the password: %v", u, err)
		}
	}
	// Cluster needs a hash tag in the prefix.
	_, err = NewRedisStore(context.Background(), StoreConfig{Redis: "redis://127.0.0.1:1,127.0.0.1:2", Prefix: "fpsafe:allowlist", Refresh: time.Minute}, nil)
	if err == nil || !strings.Contains(err.Error(), "{fpsafe:allowlist}") {
		t.Errorf("cluster without hash tag: %v", err)
	}
}

func TestSetRedisLogger(t *testing.T) {
	lg := &redisLog{}
	SetRedisLogger(slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug})))
	// Quiet for the rest of the tests.
	defer SetRedisLogger(slog.New(slog.DiscardHandler))
	s, err := NewRedisStore(context.Background(), StoreConfig{Redis: "redis://127.0.0.1:" + strconv.Itoa(daemontest.FreePort(t)),
		Prefix: "t", Refresh: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	redisWait(t, "go-redis to log the failed dial", func() bool {
		return strings.Contains(lg.String(), "level=DEBUG msg=\"go-redis: ")
	})
}

func TestRedisStoreRoundTrip(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	ctx := context.Background()
	s, _ := newRedisTestStore(t, r.url(), time.Hour)
	if err := s.LastError(); err != nil || s.Snapshot() == nil || s.Snapshot().Len() != 0 || s.LoadedAt().IsZero() {
		t.Fatalf("empty redis: err %v, snapshot %v, loaded %v", s.LastError(), s.Snapshot(), s.LoadedAt())
	}

	sec := redisEnt("sec-filings", "domain:sec.gov", RequireDMARC)
	sec.Added = Date{}
	if err := s.Add(sec, "alice"); err != nil {
		t.Fatal(err)
	}
	m := s.Lookup(dmarcPass("edgar@sec.gov"), []string{"ir@ourcorp.example"}, time.Now())
	if m == nil || !m.Authenticated || m.Entry != "sec-filings" {
		t.Fatalf("Lookup after Add = %+v", m)
	}
	raw, err := c.HGet(ctx, "t:entries", "sec-filings").Result()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRedisEntry("sec-filings", raw)
	if err != nil || got.Match != "domain:sec.gov" || got.Added != DateOf(time.Now()) {
		t.Errorf("stored %s: %+v, %v", raw, got, err)
	}
	if v, _ := c.Get(ctx, "t:version").Int64(); v != 1 || s.Version() != 1 {
		t.Errorf("version = %d, store %d; want 1", v, s.Version())
	}

	// Refused changes: nothing written.
	bad := redisEnt("bad", "domain:", RequireDMARC)
	noReason := redisEnt("x", "domain:x.example", RequireDMARC)
	noReason.Reason = ""
	for name, err := range map[string]error{
		"duplicate":     s.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDKIM), "alice"),
		"invalid match": s.Add(bad, "alice"),
		"no reason":     s.Add(noReason, "alice"),
		"no who":        s.Add(redisEnt("y", "domain:y.example", RequireDMARC), " "),
		"import partly invalid": s.Import([]Entry{redisEnt("ok", "domain:ok.example", RequireDMARC), bad},
			"bob", "migration"),
		"import without reason": s.Import([]Entry{redisEnt("ok", "domain:ok.example", RequireDMARC)}, "bob", ""),
		"import duplicate ids": s.Import([]Entry{redisEnt("ok", "domain:ok.example", RequireDMARC),
			redisEnt("ok", "domain:ok2.example", RequireDMARC)}, "bob", "migration"),
		"remove unknown": s.Remove("nope", "carol", "cleanup"),
		"remove no why":  s.Remove("sec-filings", "carol", ""),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if n, _ := c.HLen(ctx, "t:entries").Result(); n != 1 {
		t.Errorf("after refused changes: %d entries", n)
	}
	if v, _ := c.Get(ctx, "t:version").Int64(); v != 1 {
		t.Errorf("after refused changes: version %d", v)
	}

	irwire := redisEnt("irwire", "dkim:mailer.irwire.example", RequireDKIM)
	irwire.Added = NewDate(2024, 12, 1)
	abuse := redisEnt("abuse", "rcpt:abuse@ourcorp.example", RequireNone)
	if err := s.Import([]Entry{irwire, abuse}, "bob", "migration"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range s.Snapshot().Entries() {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, " ") != "irwire abuse sec-filings" { // by added, then id
		t.Errorf("snapshot order = %v", ids)
	}
	if err := s.Remove("irwire", "carol", "vendor gone"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Snapshot().Entry("irwire"); ok || s.Snapshot().Len() != 2 {
		t.Errorf("after Remove: %v", s.Snapshot().Entries())
	}
	if v, _ := c.Get(ctx, "t:version").Int64(); v != 3 {
		t.Errorf("version = %d, want 3", v)
	}

	recs, err := s.Audit()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ who, action, id, reason string }{
		{"alice", AuditAdd, "sec-filings", "reason of sec-filings"},
		{"bob", AuditImport, "irwire", "migration"},
		{"bob", AuditImport, "abuse", "migration"},
		{"carol", AuditRemove, "irwire", "vendor gone"},
	}
	if len(recs) != len(want) {
		t.Fatalf("audit: %d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Who != w.who || r.Action != w.action || r.ID != w.id || r.Reason != w.reason || r.Time.IsZero() ||
			r.Entry == nil || r.Entry.ID != w.id {
			t.Errorf("audit[%d] = %+v, want %+v", i, r, w)
		}
	}
	if recs[3].Entry.Match != "dkim:mailer.irwire.example" {
		t.Errorf("removed entry recorded as %+v", recs[3].Entry)
	}
	// The stream's own fields, for other tools.
	msgs, err := c.XRange(ctx, "t:audit", "-", "+").Result()
	if err != nil || len(msgs) != 4 {
		t.Fatalf("XRANGE: %v, %v", msgs, err)
	}
	for _, k := range []string{"time", "who", "action", "id", "entry", "reason"} {
		if _, ok := msgs[0].Values[k]; !ok {
			t.Errorf("audit stream record lacks %q: %v", k, msgs[0].Values)
		}
	}
}

func TestRedisStoreAuditPaging(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	s, _ := newRedisTestStore(t, r.url(), time.Hour)
	ctx := context.Background()
	p := c.Pipeline()
	for i := range redisAuditPage + 5 {
		p.XAdd(ctx, &redis.XAddArgs{Stream: "t:audit", ID: fmt.Sprintf("1-%d", i),
			Values: auditValues(AuditRecord{Time: time.Now(), Who: "w", Action: AuditAdd, ID: strconv.Itoa(i)})})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Audit()
	if err != nil || len(recs) != redisAuditPage+5 || recs[len(recs)-1].ID != strconv.Itoa(redisAuditPage+4) {
		t.Fatalf("Audit: %d records, %v", len(recs), err)
	}
	if id, err := nextStreamID("5-18446744073709551615"); err != nil || id != "6-0" {
		t.Errorf("nextStreamID = %q, %v", id, err)
	}
}

// Two MTAs share one list: a change made on one reaches the other by pub/sub (their
// periodic refresh is an hour away).
func TestRedisStoreTwoMTAsPubSub(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	a, _ := newRedisTestStore(t, r.url(), time.Hour)
	b, _ := newRedisTestStore(t, r.url(), time.Hour)
	runRedisStore(t, a)
	runRedisStore(t, b)
	waitSubscribed(t, c, 2)

	if err := a.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDMARC), "alice"); err != nil {
		t.Fatal(err)
	}
	redisWait(t, "the Add on a to reach b", func() bool {
		m := b.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now())
		return m != nil && m.Authenticated
	})
	if b.Version() != 1 {
		t.Errorf("b.Version = %d", b.Version())
	}
	if err := b.Remove("sec-filings", "bob", "test over"); err != nil {
		t.Fatal(err)
	}
	redisWait(t, "the Remove on b to reach a", func() bool { return a.Snapshot().Len() == 0 })

	// Concurrent changes from both MTAs: none lost (WATCH + retry).
	var wg sync.WaitGroup
	for i := range 10 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			if err := st.Add(redisEnt("e"+strconv.Itoa(i), "domain:e"+strconv.Itoa(i)+".example", RequireDMARC), "admin"); err != nil {
				t.Errorf("concurrent Add %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	redisWait(t, "both MTAs to see the 10 entries", func() bool { return a.Snapshot().Len() == 10 && b.Snapshot().Len() == 10 })
	if v, _ := c.Get(context.Background(), "t:version").Int64(); v != 12 {
		t.Errorf("version = %d, want 12", v)
	}
	if recs, err := a.Audit(); err != nil || len(recs) != 12 {
		t.Errorf("audit: %d records, %v", len(recs), err)
	}
}

// A change written straight into the hash without PUBLISH is picked up by the periodic
// refresh.
func TestRedisStorePeriodicRefresh(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	s, lg := newRedisTestStore(t, r.url(), time.Second)
	runRedisStore(t, s)
	// Let the reload that follows the subscription pass, so that only the periodic one is left.
	waitSettled(t, lg)

	if err := c.HSet(context.Background(), "t:entries", "sec-filings",
		entryJSON(t, redisEnt("sec-filings", "domain:sec.gov", RequireDMARC))).Err(); err != nil {
		t.Fatal(err)
	}
	redisWait(t, "the periodic refresh", func() bool { return s.Snapshot().Len() == 1 })
	if err := s.LastError(); err != nil {
		t.Error(err)
	}
}

// Invalid data written straight into the hash is refused as a whole; the last good list
// stays and LastError names the entry and the reason.
func TestRedisStoreInvalidEntryRefused(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	ctx := context.Background()
	s, lg := newRedisTestStore(t, r.url(), time.Hour)
	if err := s.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDMARC), "alice"); err != nil {
		t.Fatal(err)
	}
	runRedisStore(t, s)
	waitSettled(t, lg)
	loaded := s.LoadedAt()

	if err := c.HSet(ctx, "t:entries",
		"bad", `{"id":"bad","match":"domain:","require":"dmarc","reason":"r","owner":"o","added":"2025-01-01"}`,
		"junk", `not json`,
		"moved", entryJSON(t, redisEnt("elsewhere", "domain:x.example", RequireDMARC)),
		"typo", `{"id":"typo","match":"domain:t.example","require":"dmarc","reasn":"r","owner":"o","added":"2025-01-01"}`,
	).Err(); err != nil {
		t.Fatal(err)
	}
	c.Publish(ctx, "t:changed", "x")
	redisWait(t, "the invalid version to be refused", func() bool { return s.LastError() != nil })
	err := s.LastError()
	for _, want := range []string{`t:entries: entry "bad": match = "domain:"`, `entry "junk": not an entry in JSON`,
		`entry "moved": the entry's id is "elsewhere"`, `entry "typo": not an entry in JSON: json: unknown field "reasn"`,
		"the last good list stays active"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LastError lacks %q:\n%v", want, err)
		}
	}
	if !errors.Is(err, errRedisInvalid) {
		t.Errorf("LastError is not errRedisInvalid: %v", err)
	}
	if m := s.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now()); m == nil || !m.Authenticated || s.Snapshot().Len() != 1 {
		t.Errorf("the last good list is not active: %+v, %v", m, s.Snapshot().Entries())
	}
	if !s.LoadedAt().Equal(loaded) {
		t.Errorf("LoadedAt moved from %v to %v", loaded, s.LoadedAt())
	}
	// Refused once, logged once.
	if err := s.Reload(); err == nil {
		t.Error("Reload accepted the invalid list")
	}
	if n := lg.count("new version refused"); n != 1 {
		t.Errorf("refusal logged %d times", n)
	}

	// No change on top of an invalid list, except removing what is wrong.
	if err := s.Add(redisEnt("irwire", "dkim:mailer.irwire.example", RequireDKIM), "alice"); err == nil ||
		!strings.Contains(err.Error(), "invalid") {
		t.Errorf("Add on an invalid list: %v", err)
	}
	for _, id := range []string{"bad", "junk", "moved", "typo"} {
		if err := s.Remove(id, "alice", "garbage"); err != nil {
			t.Fatalf("Remove %s: %v", id, err)
		}
	}
	if err := s.LastError(); err != nil || s.Snapshot().Len() != 1 {
		t.Errorf("after cleanup: %v, %v", err, s.Snapshot().Entries())
	}
	recs, err := s.Audit()
	if err != nil || len(recs) != 5 || recs[2].ID != "junk" || recs[2].Entry != nil || recs[1].Entry == nil {
		t.Errorf("audit: %+v, %v", recs, err)
	}
}

// redis-server dies: the snapshot keeps serving, the outage is logged once; it comes back
// on the same port with its data: the store recovers and follows changes again.
func TestRedisStoreOutageAndRestart(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, true)
	s, lg := newRedisTestStore(t, r.url(), time.Hour)
	if err := s.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDMARC), "alice"); err != nil {
		t.Fatal(err)
	}
	runRedisStore(t, s)
	waitSettled(t, lg)
	loaded := s.LoadedAt()

	r.kill()
	redisWait(t, "the outage to be noticed", func() bool { return s.LastError() != nil })
	// Let it retry a few times.
	redisWait(t, "retries", func() bool { return lg.count("redis still unreachable") >= 3 })
	if m := s.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now()); m == nil || !m.Authenticated {
		t.Errorf("Lookup during the outage = %+v", m)
	}
	if !s.LoadedAt().Equal(loaded) {
		t.Errorf("LoadedAt moved during the outage: %v -> %v", loaded, s.LoadedAt())
	}
	if n := lg.count("redis unreachable;"); n != 1 {
		t.Errorf("outage logged %d times at error level, want 1", n)
	}
	if err := s.Add(redisEnt("irwire", "dkim:mailer.irwire.example", RequireDKIM), "alice"); err == nil {
		t.Error("Add during the outage succeeded")
	}

	r.start()
	redisWait(t, "recovery", func() bool { return s.LastError() == nil })
	if !s.LoadedAt().After(loaded) || s.Snapshot().Len() != 1 {
		t.Errorf("after recovery: loaded %v, entries %v", s.LoadedAt(), s.Snapshot().Entries())
	}
	if n := lg.count("redis reachable again"); n != 1 {
		t.Errorf("recovery logged %d times", n)
	}
	// Changes made elsewhere arrive again by pub/sub (the refresh is an hour away).
	c := r.client()
	waitSubscribed(t, c, 1)
	admin, _ := newRedisTestStore(t, r.url(), time.Hour)
	if err := admin.Add(redisEnt("irwire", "dkim:mailer.irwire.example", RequireDKIM), "alice"); err != nil {
		t.Fatal(err)
	}
	redisWait(t, "the change after recovery", func() bool { _, ok := s.Snapshot().Entry("irwire"); return ok })
	if n := lg.count("redis unreachable;"); n != 1 {
		t.Errorf("outage logged %d times", n)
	}
}

// Redis down at start: the store opens quickly, empty, and fills in once Redis starts.
func TestRedisStoreDownAtStart(t *testing.T) {
	t.Parallel()
	r := newTestRedis(t, false)
	start := time.Now()
	s, lg := newRedisTestStore(t, r.url(), time.Hour)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("NewRedisStore took %v", d)
	}
	if s.Snapshot() == nil || s.Snapshot().Len() != 0 || s.LastError() == nil || !s.LoadedAt().IsZero() {
		t.Fatalf("down at start: snapshot %v, err %v, loaded %v", s.Snapshot(), s.LastError(), s.LoadedAt())
	}
	if m := s.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now()); m != nil {
		t.Errorf("Lookup on the empty store = %+v", m)
	}
	if !strings.Contains(lg.String(), "EMPTY") {
		t.Errorf("the empty start is not logged:\n%s", lg)
	}
	runRedisStore(t, s)

	r.start()
	// An admin tool adds an entry (HSET, then PUBLISH): whether it lands before or after the
	// store subscribes, the store picks it up (reload on subscription, or the message).
	c := r.client()
	if err := c.HSet(context.Background(), "t:entries", "sec-filings",
		entryJSON(t, redisEnt("sec-filings", "domain:sec.gov", RequireDMARC))).Err(); err != nil {
		t.Fatal(err)
	}
	c.Publish(context.Background(), "t:changed", "1")
	redisWait(t, "the store to fill in", func() bool {
		m := s.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now())
		return m != nil && m.Authenticated && s.LastError() == nil
	})
	if s.LoadedAt().IsZero() {
		t.Error("LoadedAt still zero")
	}
}

// A ctx deadline bounds NewRedisStore even when Redis does not answer at all (a listener
// that never speaks).
func TestRedisStoreStartBounded(t *testing.T) {
	t.Parallel()
	// A TCP listener that never answers (connections wait in its backlog), like a hung server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := NewRedisStore(ctx, StoreConfig{Redis: "redis://127.0.0.1:" + strconv.Itoa(port), Prefix: "t", Refresh: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("NewRedisStore took %v against a silent server", d)
	}
	if s.LastError() == nil || s.Snapshot().Len() != 0 {
		t.Errorf("silent server: %v, %v", s.LastError(), s.Snapshot())
	}
}

// The password appears in no log line and no error, whatever happens.
func TestRedisStorePasswordNeverShown(t *testing.T) {
	t.Parallel()
	const pw = "Sup3r-S3cret_pw"
	r := startTestRedis(t, true, "--requirepass", pw)
	s, lg := newRedisTestStore(t, r.url(), time.Hour)
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.LastError(); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	if strings.Contains(s.URL(), pw) || !strings.Contains(s.URL(), "xxxxx") {
		t.Errorf("URL() = %q", s.URL())
	}
	if err := s.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDMARC), "alice"); err != nil {
		t.Fatal(err)
	}
	if recs, err := s.Audit(); err != nil || len(recs) != 1 {
		t.Fatalf("audit: %v, %v", recs, err)
	}
	runRedisStore(t, s)
	waitSubscribed(t, r.client(), 1)

	r.kill()
	redisWait(t, "the outage", func() bool { return s.LastError() != nil })
	check(s.LastError())
	check(s.Reload())
	check(s.Add(redisEnt("irwire", "dkim:mailer.irwire.example", RequireDKIM), "alice"))
	check(s.Remove("sec-filings", "alice", "x"))
	_, err := s.Audit()
	check(err)
	r.start()
	redisWait(t, "recovery", func() bool { return s.LastError() == nil })

	// Wrong and missing passwords, and a password the server does not expect.
	for _, u := range []string{
		"redis://:Wr0ng-" + pw + "@" + r.addr() + "/0",
		"redis://fpsafe:" + pw + "@" + r.addr() + "/0", // no such user
		"redis://" + r.addr() + "/0",
	} {
		o, lo := newRedisTestStore(t, u, time.Hour)
		if o.LastError() == nil {
			t.Errorf("%s: no error", RedactURL(u))
		}
		check(o.LastError())
		check(o.Add(redisEnt("x", "domain:x.example", RequireDMARC), "alice"))
		if strings.Contains(lo.String(), pw) {
			t.Errorf("%s: log shows the password:\n%s", RedactURL(u), lo)
		}
	}
	open := startTestRedis(t, false)
	o, lo := newRedisTestStore(t, "redis://:"+pw+"@"+open.addr()+"/0", time.Hour)
	check(o.LastError())
	if strings.Contains(lo.String(), pw) {
		t.Errorf("server without password: log shows the password:\n%s", lo)
	}

	if len(errs) < 8 {
		t.Errorf("only %d errors to check", len(errs))
	}
	for _, err := range errs {
		t.Logf("error: %v", err)
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
	if strings.Contains(lg.String(), pw) {
		t.Errorf("log shows the password:\n%s", lg)
	}
}

// A Redis that lost everything (restart without persistence, FLUSHALL) does not empty the
// allowlist: the last good list stays until a list is written again.
func TestRedisStoreLostDataKeepsLastList(t *testing.T) {
	t.Parallel()
	r := startTestRedis(t, false)
	c := r.client()
	ctx := context.Background()
	s, _ := newRedisTestStore(t, r.url(), time.Hour)
	if err := s.Add(redisEnt("sec-filings", "domain:sec.gov", RequireDMARC), "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil || s.Snapshot().Len() != 1 {
		t.Fatalf("initial load: %v, %d entries", err, s.Snapshot().Len())
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), "every entry are gone") || s.Snapshot().Len() != 1 {
		t.Fatalf("after FLUSHALL: %v, %d entries", err, s.Snapshot().Len())
	}
	if m := s.Lookup(dmarcPass("edgar@sec.gov"), nil, time.Now()); m == nil || !m.Authenticated {
		t.Fatalf("the last good list is not active: %+v", m)
	}
	// re-importing the list (version 1 again) is accepted
	if err := s.Import([]Entry{redisEnt("ir", "domain:ir.example", RequireDKIM)}, "bob", "restore after redis lost its data"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil || s.Snapshot().Len() != 1 {
		t.Fatalf("after re-import: %v, %v", err, s.Snapshot().Entries())
	}
	if _, ok := s.Snapshot().Entry("ir"); !ok {
		t.Fatalf("re-imported list not active: %v", s.Snapshot().Entries())
	}
}
