package milter_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// fuzzPanics collects every panic the server reports: fpsafe's own recovered panics (its
// logger) and go-milter's (the standard logger).
type fuzzPanics struct {
	mu   sync.Mutex
	msgs []string
}

func (p *fuzzPanics) add(s string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, s)
	p.mu.Unlock()
}

func (p *fuzzPanics) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

func (p *fuzzPanics) since(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.msgs[n:]...)
}

// Write receives go-milter's log.Printf lines.
func (p *fuzzPanics) Write(b []byte) (int, error) {
	if strings.Contains(string(b), "panic") {
		p.add(string(b))
	}
	return len(b), nil
}

// fuzzPanicHandler is a slog.Handler that keeps fpsafe's "... panicked" records.
type fuzzPanicHandler struct{ p *fuzzPanics }

func (h fuzzPanicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h fuzzPanicHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h fuzzPanicHandler) WithGroup(string) slog.Handler            { return h }
func (h fuzzPanicHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		h.p.add(b.String())
	}
	return nil
}

// fuzzServer is one milter server shared by all inputs of a fuzz run, and the deciders
// an input can choose between.
type fuzzServer struct {
	srv      *milter.Server
	addr     string
	panics   *fuzzPanics
	deciders []*policy.Pipeline
}

// startFuzzServer is start for a *testing.F: the server lives as long as the fuzz target,
// not one input.
func startFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	p := &fuzzPanics{}
	prev := log.Writer()
	log.SetOutput(p) // go-milter logs protocol errors and recovered panics here
	f.Cleanup(func() { log.SetOutput(prev) })

	var deciders []*policy.Pipeline
	for _, v := range []scoring.Verdict{
		{Outcome: scoring.Clean},
		{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}},
		{Outcome: scoring.Spam, Details: []string{"GTUBE"}},
		{Outcome: scoring.Virus, Details: []string{"PUA.Win.Packer"}}, // suspicious family: tags
		{Outcome: scoring.Error, Reason: "connection refused"},
	} {
		deciders = append(deciders, pipeline(v))
	}
	cfg := milter.DefaultConfig()
	cfg.SpoolDir = f.TempDir()
	cfg.SpoolMemory = 64 // some bodies go to spool files
	cfg.DecisionTimeout = 5 * time.Second
	srv, err := milter.New(cfg, deciders[0], slog.New(fuzzPanicHandler{p}))
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.Logf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			f.Errorf("serve: %v", err)
		}
	})
	return &fuzzServer{srv: srv, addr: ln.Addr().String(), panics: p, deciders: deciders}
}

// fuzzDialer remembers the connection it made, so that a step can drop it the way a
// crashing or timing-out MTA does: no ABORT, no QUIT.
type fuzzDialer struct{ conn net.Conn }

func (d *fuzzDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 3*time.Second)
	d.conn = c
	return c, err
}

func (fs *fuzzServer) session() (*gomilter.ClientSession, *fuzzDialer, error) {
	d := &fuzzDialer{}
	c := gomilter.NewClientWithOptions("tcp", fs.addr, gomilter.ClientOptions{
		Dialer:       d,
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		ReadTimeout:  3 * time.Second,
		WriteTimeout: 3 * time.Second,
	})
	s, err := c.Session()
	return s, d, err
}

// fuzzStripped are the header names fpsafe may delete with the default [policy].
func fuzzStripped(name string) bool {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "x-fpsafe-") || n == "x-spam" {
		return true
	}
	ok, _ := path.Match("x-spam-*", n)
	return ok
}

// fuzzAdded are the fields fpsafe may add.
var fuzzAdded = map[string]bool{
	policy.HeaderVerdict: true, policy.HeaderReport: true, policy.HeaderVirus: true, policy.HeaderAuthResults: true,
	"X-Spam-Flag": true, "X-Spam-Score": true, "X-Spam-Status": true,
}

// fuzzCheckEnd checks what end-of-message returned: CONTINUE, header edits that are safe
// on the wire, and at most one quarantine.
func fuzzCheckEnd(t *testing.T, mods []gomilter.ModifyAction, act *gomilter.Action) {
	t.Helper()
	if act.Code != gomilter.ActContinue {
		t.Fatalf("end-of-message answered %c, want continue", act.Code)
	}
	quarantines := 0
	for _, m := range mods {
		switch m.Code {
		case gomilter.ActQuarantine:
			quarantines++
			if m.Reason == "" || len(m.Reason) > 100 || strings.ContainsAny(m.Reason, "\r\n\x00") {
				t.Fatalf("quarantine reason %q", m.Reason)
			}
			continue
		case gomilter.ActAddHeader, gomilter.ActInsertHeader:
			if !fuzzAdded[m.HeaderName] {
				t.Fatalf("added field %q", m.HeaderName)
			}
		case gomilter.ActChangeHeader:
			if m.HeaderIndex < 1 {
				t.Fatalf("change of %q at index %d", m.HeaderName, m.HeaderIndex)
			}
			if m.HeaderValue != "" || !fuzzStripped(m.HeaderName) {
				t.Fatalf("changed field %q to %q: fpsafe only deletes forged fields here", m.HeaderName, m.HeaderValue)
			}
		default:
			t.Fatalf("end-of-message modification %c: only header edits and quarantine are allowed", m.Code)
		}
		// go-milter turns CRLF into LF for Postfix: every line break must be a fold.
		v := m.HeaderValue
		for i := 0; i < len(v); i++ {
			switch {
			case v[i] == '\n' && (i+1 == len(v) || v[i+1] != '\t'):
				t.Fatalf("line break that is not a fold in %s: %q", m.HeaderName, v)
			case v[i] == '\r' || v[i] == 0:
				t.Fatalf("byte %#x in %s: %q", v[i], m.HeaderName, v)
			}
		}
	}
	if quarantines > 1 {
		t.Fatalf("%d quarantine requests", quarantines)
	}
}

// The steps an input is made of: one byte each, arguments from the following bytes and
// from the NUL-separated words of the input's text.
const (
	stepConn = iota
	stepHelo
	stepMail
	stepRcpt
	stepHeader
	stepHeaderEnd
	stepBody
	stepEnd
	stepAbort
	stepMacros
	stepDrop
	numSteps
)

var fuzzMacroCodes = []gomilter.Code{gomilter.CodeConn, gomilter.CodeHelo, gomilter.CodeMail, gomilter.CodeRcpt,
	gomilter.CodeHeader, gomilter.CodeEOH, gomilter.CodeBody, gomilter.CodeEOB}

var fuzzMacroNames = []string{"i", "{auth_authen}", "{client_addr}", "{client_name}", "{mail_addr}", "{rcpt_addr}", "j"}

// FuzzSession drives the milter with random client sessions: CONNECT, HELO, MAIL, RCPT,
// header fields with fuzzed names and values, EOH, body chunks, end-of-message, ABORT,
// macros, and dropping the connection, in any order and number, against one server for
// the whole run (each input picks the engine verdict: clean, virus, spam, suspicious or
// failed). Every step that gets an answer gets CONTINUE; end-of-message returns only
// header edits and at most one quarantine (fuzzCheckEnd); nothing in the server panics
// (fpsafe recovers and logs, go-milter recovers and logs: both logs are watched); after
// the session closes the server's InFlight count returns to what it was; and after a
// session that ended in an error a fresh session still gets a whole message through.
//
// FPSAFE_FUZZ_NO_DROP=1 turns the drop step into a polite close, to fuzz the rest while
// the in-flight leak on dropped connections is open.
func FuzzSession(f *testing.F) {
	fs := startFuzzServer(f)
	noDrop := os.Getenv("FPSAFE_FUZZ_NO_DROP") != ""

	t0 := "mx.sender.example\x00192.0.2.7\x00alice@example.org\x00bob@example.net\x00From\x00 Alice <alice@example.org>\x00Subject\x00 Hello\x00Hi Bob.\r\n"
	f.Add([]byte{0, stepConn, 1, stepHelo, stepMail, stepRcpt, stepHeader, stepHeader, stepHeaderEnd, stepBody, stepEnd}, t0)
	f.Add([]byte{1, stepConn, 2, stepHelo, stepMacros, 2, stepMail, stepRcpt, stepHeader, stepHeaderEnd, stepBody, stepBody, stepMacros, 7, stepEnd, stepMail, stepEnd}, t0+"\x00i\x00QID1")
	f.Add([]byte{2, stepMail, stepHeader, stepHeader, stepHeader, stepEnd},
		"a@b\x00X-FPSafe-Verdict\x00 clean\x00x-spam-flag\x00 NO\x00X-FPSAFE-REPORT\x00 trust me\r\n\tfolded")
	f.Add([]byte{3, stepEnd, stepAbort, stepHeader, stepBody, stepRcpt, stepHeaderEnd, stepMail, stepAbort, stepEnd}, "x\x00y\x00z")
	f.Add([]byte{4, stepConn, 0, stepConn, 3, stepMail, stepBody, stepBody, stepBody, stepEnd},
		"\x00not an ip\x00<>\x00"+strings.Repeat("body line\r\n", 20)+"\x00\x00more")
	f.Add([]byte{1, stepMail, stepHeader, stepHeaderEnd, stepBody, stepEnd}, "a@b\x00\x00value of an empty name\x00"+strings.Repeat("x", 200))
	f.Add([]byte{0, stepConn, 1, stepHelo, stepMail, stepRcpt, stepHeader, stepEnd}, "h\x00::1\x00a@b\x00c@d\x00Subject\x00 caf\xc3\xa9 \xff\r\nX-Injected: 1")

	f.Fuzz(func(t *testing.T, ops []byte, text string) {
		if len(ops) == 0 {
			return
		}
		fs.srv.SetDecider(fs.deciders[int(ops[0])%len(fs.deciders)])
		ops = ops[1:]
		words := strings.Split(text, "\x00")
		word := func() string {
			if len(words) == 0 {
				return ""
			}
			w := words[0]
			words = words[1:]
			return w
		}
		arg := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		before := fs.srv.InFlight()
		panics := fs.panics.count()

		s, d, err := fs.session()
		if err != nil {
			t.Fatalf("new session: %v", err)
		}
		failed, dropped := false, false
		// answer checks a step that gets an answer; a client error ends the session.
		answer := func(step string, act *gomilter.Action, err error) {
			if err != nil {
				t.Logf("%s: %v (session ends)", step, err)
				failed = true
				return
			}
			if act.Code != gomilter.ActContinue {
				t.Fatalf("%s answered %c, want continue", step, act.Code)
			}
		}
		for steps := 0; len(ops) > 0 && !failed && !dropped && steps < 64; steps++ {
			switch op := arg() % numSteps; op {
			case stepConn:
				fam := []gomilter.ProtoFamily{gomilter.FamilyUnknown, gomilter.FamilyUnix, gomilter.FamilyInet, gomilter.FamilyInet6}[arg()%4]
				port := uint16(arg())<<8 | uint16(arg())
				act, err := s.Conn(word(), fam, port, word())
				answer("connect", act, err)
			case stepHelo:
				act, err := s.Helo(word())
				answer("helo", act, err)
			case stepMail:
				act, err := s.Mail(word(), nil)
				answer("mail", act, err)
			case stepRcpt:
				act, err := s.Rcpt(word(), nil)
				answer("rcpt", act, err)
			case stepHeader:
				act, err := s.HeaderField(word(), word())
				answer("header", act, err)
			case stepHeaderEnd:
				act, err := s.HeaderEnd()
				answer("eoh", act, err)
			case stepBody:
				w := word()
				if len(w) > gomilter.MaxBodyChunk {
					w = w[:gomilter.MaxBodyChunk]
				}
				act, err := s.BodyChunk([]byte(w))
				answer("body", act, err)
			case stepEnd:
				mods, act, err := s.End()
				if err != nil {
					answer("end", nil, err)
					break
				}
				fuzzCheckEnd(t, mods, act)
			case stepAbort:
				if err := s.Abort(); err != nil {
					answer("abort", nil, err)
				}
			case stepMacros:
				code := fuzzMacroCodes[int(arg())%len(fuzzMacroCodes)]
				var kv []string
				for n := int(arg() % 4); n > 0; n-- {
					kv = append(kv, fuzzMacroNames[int(arg())%len(fuzzMacroNames)], word())
				}
				if err := s.Macros(code, kv...); err != nil {
					answer("macros", nil, err)
				}
			case stepDrop:
				if noDrop {
					s.Close()
				} else {
					d.conn.Close()
				}
				dropped = true
			}
		}
		if !dropped {
			s.Close()
		}

		deadline := time.Now().Add(3 * time.Second)
		for fs.srv.InFlight() != before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := fs.srv.InFlight(); got != before {
			t.Fatalf("InFlight %d after the session closed, want %d (dropped connection: %v)", got, before, dropped && !noDrop)
		}
		if p := fs.panics.since(panics); len(p) > 0 {
			t.Fatalf("the server panicked: %q", p)
		}

		if failed {
			// The server must still serve a whole message on a fresh connection.
			s2, _, err := fs.session()
			if err != nil {
				t.Fatalf("server dead after a failed session: %v", err)
			}
			defer s2.Close()
			for _, st := range []struct {
				name string
				f    func() (*gomilter.Action, error)
			}{
				{"connect", func() (*gomilter.Action, error) {
					return s2.Conn("mx.sender.example", gomilter.FamilyInet, 40000, "192.0.2.7")
				}},
				{"helo", func() (*gomilter.Action, error) { return s2.Helo("mx.sender.example") }},
				{"mail", func() (*gomilter.Action, error) { return s2.Mail("a@example.org", nil) }},
				{"header", func() (*gomilter.Action, error) { return s2.HeaderField("Subject", " ok") }},
				{"eoh", s2.HeaderEnd},
			} {
				act, err := st.f()
				if err != nil || act.Code != gomilter.ActContinue {
					t.Fatalf("fresh session after a failed one: %s: %v %v", st.name, act, err)
				}
			}
			mods, act, err := s2.End()
			if err != nil {
				t.Fatalf("fresh session after a failed one: end: %v", err)
			}
			fuzzCheckEnd(t, mods, act)
		}
	})
}
