package milter_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

// recorder is a Decider that records what the milter built, then asks a real pipeline.
type recorder struct {
	*policy.Pipeline
	mu   sync.Mutex
	got  []seen
	hook func(*mail.Message) // runs inside Run: panics, sleeps...
}

type seen struct {
	queueID string
	env     mail.Envelope
	header  []mail.Field
	body    string
}

func (r *recorder) Run(ctx context.Context, m *mail.Message) policy.Decision {
	rc, _ := m.Body.Open()
	b, _ := io.ReadAll(rc)
	r.mu.Lock()
	r.got = append(r.got, seen{m.QueueID, m.Env, append([]mail.Field(nil), m.Header...), string(b)})
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		hook(m)
	}
	return r.Pipeline.Run(ctx, m)
}

func (r *recorder) seen() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.got...)
}

// engine returns a pipeline whose single fake engine says v.
func pipeline(v scoring.Verdict) *policy.Pipeline {
	c := scoring.EngineConfig{Name: "fake", Type: "clamd", Address: "inet:127.0.0.1:1"}.WithDefaults()
	cfg := policy.DefaultConfig()
	cfg.QuarantineMinEngines = 1
	return &policy.Pipeline{
		Engines: scoring.NewAggregator([]scoring.Configured{{Engine: &enginetest.Engine{EngineName: "fake", Verdict: v}, Config: c}}, scoring.DefaultConfig(), nil),
		Config:  cfg,
	}
}

type harness struct {
	srv  *milter.Server
	rec  *recorder
	addr string
}

func start(t *testing.T, cfg milter.Config, p *policy.Pipeline) *harness {
	t.Helper()
	if cfg.Listen == "" {
		cfg = milter.DefaultConfig()
	}
	cfg.SpoolDir = t.TempDir()
	rec := &recorder{Pipeline: p}
	srv, err := milter.New(cfg, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &harness{srv: srv, rec: rec, addr: ln.Addr().String()}
}

// session opens an MTA-like client session and sends CONNECT and HELO.
func (h *harness) session(t *testing.T) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		ReadTimeout:  20 * time.Second,
		WriteTimeout: 20 * time.Second,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ok(t)(s.Conn("mx.sender.example", gomilter.FamilyInet, 40000, "192.0.2.7"))
	ok(t)(s.Helo("mx.sender.example"))
	return s
}

// ok asserts that a client step succeeded and fpsafe answered continue.
func ok(t *testing.T) func(*gomilter.Action, error) {
	return func(a *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if a.Code != gomilter.ActContinue {
			t.Fatalf("action %c, want continue", a.Code)
		}
	}
}

// send runs one transaction (MAIL, RCPT, headers, body, EOM) and returns the modifications.
func send(t *testing.T, s *gomilter.ClientSession, qid, from string, rcpts []string, hdr [][2]string, body string) []gomilter.ModifyAction {
	t.Helper()
	s.Macros(gomilter.CodeMail, "{auth_authen}", "alice")
	ok(t)(s.Mail("<"+from+">", nil))
	for _, r := range rcpts {
		ok(t)(s.Rcpt("<"+r+">", nil))
	}
	for _, f := range hdr {
		ok(t)(s.HeaderField(f[0], f[1]))
	}
	ok(t)(s.HeaderEnd())
	for len(body) > 0 {
		n := min(len(body), 65535)
		ok(t)(s.BodyChunk([]byte(body[:n])))
		body = body[n:]
	}
	s.Macros(gomilter.CodeEOB, "i", qid)
	mods, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	if act.Code != gomilter.ActContinue {
		t.Fatalf("end-of-message answered %c: fpsafe must answer continue", act.Code)
	}
	return mods
}

var stdHeader = [][2]string{{"From", " Alice <alice@example.org>"}, {"To", " bob@example.net"}, {"Subject", " Hello"}}

func added(mods []gomilter.ModifyAction) map[string]string {
	m := map[string]string{}
	for _, a := range mods {
		if a.Code == gomilter.ActAddHeader {
			m[a.HeaderName] = a.HeaderValue
		}
	}
	return m
}

func TestCleanMessage(t *testing.T) {
	h := start(t, milter.Config{}, pipeline(scoring.Verdict{Outcome: scoring.Clean}))
	s := h.session(t)
	mods := send(t, s, "QID1", "alice@example.org", []string{"bob@example.net", "carol@example.net"}, stdHeader, "Hi Bob.\r\n")
	a := added(mods)
	if !strings.HasPrefix(a["X-FPSafe-Verdict"], " clean; score=0.0") {
		t.Fatalf("verdict header %q; all %v", a["X-FPSafe-Verdict"], mods)
	}
	if _, ok := a["X-Spam-Flag"]; ok {
		t.Fatal("clean message flagged")
	}
	got := h.rec.seen()[0]
	if got.queueID != "QID1" || got.env.MailFrom != "alice@example.org" || len(got.env.Rcpts) != 2 ||
		got.env.ClientIP.String() != "192.0.2.7" || got.env.Helo != "mx.sender.example" || got.env.AuthUser != "alice" {
		t.Fatalf("envelope %+v qid %q", got.env, got.queueID)
	}
	if got.body != "Hi Bob.\r\n" || len(got.header) != 3 || got.header[2] != (mail.Field{Name: "Subject", Value: " Hello"}) {
		t.Fatalf("message %+v", got)
	}
}

// Forged verdict headers are removed (highest index first), then fpsafe's are added; a
// virus is quarantined with a reason.
func TestForgedHeadersAndQuarantine(t *testing.T) {
	h := start(t, milter.Config{}, pipeline(scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}}))
	s := h.session(t)
	hdr := append([][2]string{{"X-FPSafe-Verdict", " clean; score=0.0"}, {"X-Spam-Flag", " NO"}, {"X-Spam-Flag", " NO"}}, stdHeader...)
	mods := send(t, s, "QID2", "evil@example.com", []string{"bob@example.net"}, hdr, "payload\r\n")
	var removed []string
	var reason string
	for _, a := range mods {
		switch a.Code {
		case gomilter.ActChangeHeader:
			if a.HeaderValue == "" {
				removed = append(removed, fmt.Sprintf("%s#%d", a.HeaderName, a.HeaderIndex))
			}
		case gomilter.ActQuarantine:
			reason = a.Reason
		}
	}
	if strings.Join(removed, ",") != "X-Spam-Flag#2,X-Spam-Flag#1,X-FPSafe-Verdict#1" {
		t.Fatalf("removed %v", removed)
	}
	if !strings.Contains(reason, "EICAR") || len(reason) > 100 {
		t.Fatalf("quarantine reason %q", reason)
	}
	a := added(mods)
	if a["X-Spam-Flag"] != " YES" || !strings.HasPrefix(a["X-FPSafe-Verdict"], " quarantined;") || !strings.Contains(a["X-FPSafe-Virus"], "EICAR") {
		t.Fatalf("added %v", a)
	}
}

// Several messages on one connection: each sees the connection's facts and only its own
// headers; an aborted message leaves nothing behind.
func TestSeveralMessagesAndAbort(t *testing.T) {
	h := start(t, milter.Config{}, pipeline(scoring.Verdict{Outcome: scoring.Clean}))
	s := h.session(t)
	send(t, s, "Q1", "a@example.org", []string{"x@example.net"}, [][2]string{{"Subject", " first"}}, "one\r\n")
	// an aborted transaction, with a body above nothing in particular
	ok(t)(s.Mail("<b@example.org>", nil))
	ok(t)(s.Rcpt("<y@example.net>", nil))
	ok(t)(s.HeaderField("Subject", " aborted"))
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	send(t, s, "Q3", "c@example.org", []string{"z@example.net"}, [][2]string{{"Subject", " third"}}, "three\r\n")
	got := h.rec.seen()
	if len(got) != 2 {
		t.Fatalf("decided %d messages, want 2", len(got))
	}
	third := got[1]
	if third.queueID != "Q3" || third.env.MailFrom != "c@example.org" || strings.Join(third.env.Rcpts, ",") != "z@example.net" {
		t.Fatalf("third message envelope %+v", third.env)
	}
	if len(third.header) != 1 || third.header[0].Value != " third" {
		t.Fatalf("third message headers leaked from earlier ones: %v", third.header)
	}
	if third.env.Helo != "mx.sender.example" || third.env.ClientIP.String() != "192.0.2.7" {
		t.Fatalf("connection facts lost for a later message: %+v", third.env)
	}
	waitInFlight(t, h.srv, 0)
	if b := h.srv.SpoolBytes(); b != 0 {
		t.Fatalf("spool bytes %d after every message ended", b)
	}
}

func waitInFlight(t *testing.T, s *milter.Server, want int64) {
	t.Helper()
	for i := 0; i < 200 && s.InFlight() != want; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.InFlight(); got != want {
		t.Fatalf("in flight %d, want %d", got, want)
	}
}

// A body above spool_memory goes to a spool file that is gone after the message.
func TestSpoolToDisk(t *testing.T) {
	cfg := milter.DefaultConfig()
	cfg.SpoolMemory = 64 << 10
	h := start(t, cfg, pipeline(scoring.Verdict{Outcome: scoring.Clean}))
	var onDisk []string
	h.rec.hook = func(m *mail.Message) {
		ents, _ := os.ReadDir(h.srv.SpoolDir())
		for _, e := range ents {
			fi, _ := e.Info()
			onDisk = append(onDisk, fmt.Sprintf("%s %v", e.Name(), fi.Mode().Perm()))
		}
	}
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 8000) // ~520 kB
	s := h.session(t)
	send(t, s, "QBIG", "a@example.org", []string{"b@example.net"}, stdHeader, body)
	if len(onDisk) != 1 || !strings.HasSuffix(onDisk[0], "-rw-------") {
		t.Fatalf("spool files during the decision: %v, want one, mode 0600", onDisk)
	}
	if got := h.rec.seen()[0].body; got != body {
		t.Fatalf("spooled body differs: %d bytes, want %d", len(got), len(body))
	}
	if ents, _ := os.ReadDir(h.srv.SpoolDir()); len(ents) != 0 {
		t.Fatalf("spool files left after the message: %v", ents)
	}
}

// A header value close to go-milter's 1 MiB packet limit, and thousands of fields.
func TestHugeHeader(t *testing.T) {
	h := start(t, milter.Config{}, pipeline(scoring.Verdict{Outcome: scoring.Clean}))
	s := h.session(t)
	hdr := [][2]string{{"X-Huge", " " + strings.Repeat("x", 900<<10)}}
	for i := range 5000 {
		hdr = append(hdr, [2]string{"X-Many", fmt.Sprintf(" %d", i)})
	}
	mods := send(t, s, "QH", "a@example.org", []string{"b@example.net"}, append(hdr, stdHeader...), "body\r\n")
	if !strings.HasPrefix(added(mods)["X-FPSafe-Verdict"], " clean;") {
		t.Fatalf("mods %v", added(mods))
	}
	if n := len(h.rec.seen()[0].header); n != 5004 {
		t.Fatalf("kept %d header fields, want 5004", n)
	}
}

// Fail open: a panicking decider, and one that overruns the decision deadline, both end in
// an unscanned delivery with the reason, and the connection keeps working.
func TestFailOpen(t *testing.T) {
	cfg := milter.DefaultConfig()
	cfg.DecisionTimeout = 300 * time.Millisecond
	h := start(t, cfg, pipeline(scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Eicar"}}))
	s := h.session(t)
	for _, c := range []struct {
		hook func(*mail.Message)
		want string
	}{
		{func(*mail.Message) { panic("boom") }, "internal error: boom"},
		{func(*mail.Message) { time.Sleep(2 * time.Second) }, "decision overran 300ms"},
		{nil, ""},
	} {
		h.rec.mu.Lock()
		h.rec.hook = c.hook
		h.rec.mu.Unlock()
		mods := send(t, s, "QF", "a@example.org", []string{"b@example.net"}, stdHeader, "body\r\n")
		a := added(mods)
		if c.want == "" { // the connection still works and the engine's verdict applies again
			if !strings.HasPrefix(a["X-FPSafe-Verdict"], " quarantined;") {
				t.Fatalf("after failures: %v", a)
			}
			continue
		}
		if !strings.HasPrefix(a["X-FPSafe-Verdict"], " unscanned;") || !strings.Contains(a["X-FPSafe-Report"], c.want) {
			t.Fatalf("want unscanned with %q, got %v", c.want, a)
		}
		if _, flagged := a["X-Spam-Flag"]; flagged {
			t.Fatal("unscanned message flagged as spam")
		}
		for _, m := range mods {
			if m.Code == gomilter.ActQuarantine {
				t.Fatal("unscanned message quarantined")
			}
		}
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/fpsafe.sock"
	cfg := milter.DefaultConfig()
	cfg.Listen = "unix:" + path
	ln1, err := milter.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln1.(*net.UnixListener).SetUnlinkOnClose(false)
	ln1.Close() // leaves a stale socket file behind, as a crash would
	ln2, err := milter.Listen(cfg)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln2.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v", fi.Mode().Perm(), err)
	}
	os.WriteFile(dir+"/plain", nil, 0o644)
	cfg.Listen = "unix:" + dir + "/plain"
	if _, err := milter.Listen(cfg); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file was replaced: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for listen, ok := range map[string]bool{
		"inet:127.0.0.1:8890": true, "inet:8890@127.0.0.1": true, "unix:/run/fpsafe.sock": true, "inet:[::1]:8890": true,
		"inet:0.0.0.0:8890": false, "inet:192.0.2.1:8890": false, "tcp:127.0.0.1:1": false, "inet:127.0.0.1": false,
	} {
		c := milter.DefaultConfig()
		c.Listen = listen
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("listen %q: err %v, want ok=%v", listen, err, ok)
		}
	}
	c := milter.DefaultConfig()
	c.Listen, c.AllowRemote = "inet:0.0.0.0:8890", true
	if err := c.Validate(); err != nil {
		t.Errorf("allow_remote: %v", err)
	}
}

// In observe mode the milter writes fpsafe's fields only: no quarantine request, no
// X-Spam-* change, forged X-Spam-* left alone.
func TestObserveModeSendsNoQuarantine(t *testing.T) {
	p := pipeline(scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Eicar"}})
	p.Config.Mode = policy.ModeObserve
	h := start(t, milter.Config{}, p)
	mods := send(t, h.session(t), "QO", "a@example.org", []string{"b@example.net"}, append([][2]string{{"X-Spam-Flag", " NO"}}, stdHeader...), "x\r\n")
	for _, m := range mods {
		if m.Code == gomilter.ActQuarantine || m.Code == gomilter.ActChangeHeader || (m.Code == gomilter.ActAddHeader && !strings.HasPrefix(m.HeaderName, "X-FPSafe-")) {
			t.Fatalf("observe mode sent %c %s=%q", m.Code, m.HeaderName, m.HeaderValue)
		}
	}
	if v := added(mods)["X-FPSafe-Verdict"]; v != " quarantined; score=0.0; mode=observe" {
		t.Fatalf("verdict %q", v)
	}
}

// Spool files left by a crashed run are removed at start, in a configured spool directory
// and in the private directories of processes that are gone.
func TestStaleSpoolsRemoved(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/fpsafe-body-123", []byte("x"), 0o600)
	os.WriteFile(dir+"/unrelated", []byte("x"), 0o600)
	cfg := milter.DefaultConfig()
	cfg.SpoolDir = dir
	if _, err := milter.New(cfg, pipeline(scoring.Verdict{Outcome: scoring.Clean}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/fpsafe-body-123"); !os.IsNotExist(err) {
		t.Fatal("stale spool file kept")
	}
	if _, err := os.Stat(dir + "/unrelated"); err != nil {
		t.Fatal("unrelated file removed")
	}

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := tmp + "/fpsafe-spool-999999999-abc"
	alive := fmt.Sprintf("%s/fpsafe-spool-%d-abc", tmp, os.Getpid())
	os.MkdirAll(dead, 0o700)
	os.MkdirAll(alive, 0o700)
	srv, err := milter.New(milter.DefaultConfig(), pipeline(scoring.Verdict{Outcome: scoring.Clean}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatal("spool dir of a dead process kept")
	}
	if _, err := os.Stat(alive); err != nil {
		t.Fatal("spool dir of a live process removed")
	}
	if fi, err := os.Stat(srv.SpoolDir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("private spool dir %v %v", fi, err)
	}
}

// An MTA that drops the connection in the middle of a message (crash, network, idle
// timeout) frees the message: no count left in flight, no spool file left behind.
func TestDroppedConnectionEndsMessage(t *testing.T) {
	cfg := milter.DefaultConfig()
	cfg.SpoolMemory = 1024
	h := start(t, cfg, pipeline(scoring.Verdict{Outcome: scoring.Clean}))
	s := h.session(t)
	ok(t)(s.Mail("<a@example.org>", nil))
	ok(t)(s.Rcpt("<b@example.net>", nil))
	ok(t)(s.HeaderEnd())
	ok(t)(s.BodyChunk(make([]byte, 4096))) // above spool_memory: on disk
	var ents []os.DirEntry
	for i := 0; i < 200 && len(ents) != 1; i++ { // no reply to wait for: poll
		time.Sleep(10 * time.Millisecond)
		ents, _ = os.ReadDir(h.srv.SpoolDir())
	}
	if len(ents) != 1 {
		t.Fatalf("spool files %v", ents)
	}
	s.Close()
	waitInFlight(t, h.srv, 0)
	for i := 0; i < 100; i++ {
		if ents, _ := os.ReadDir(h.srv.SpoolDir()); len(ents) == 0 && h.srv.SpoolBytes() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	ents, _ = os.ReadDir(h.srv.SpoolDir())
	t.Fatalf("after the drop: spool files %v, spool bytes %d", ents, h.srv.SpoolBytes())
}
