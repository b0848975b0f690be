package rspamd_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
	"github.com/fpsafe/fpsafe/scoring/rspamd"
)

const cleanJSON = `{"is_skipped":false,"score":1.5,"required_score":15.0,"action":"no action","symbols":{"MIME_GOOD":{"name":"MIME_GOOD","score":-0.1}}}`

// recorder is an HTTP rspamd stand-in that keeps what it was sent.
type recorder struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
	reply  string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs, r.bodies = append(r.reqs, req), append(r.bodies, b)
	r.mu.Unlock()
	if req.URL.Path == "/ping" {
		io.WriteString(w, "pong\r\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, r.reply)
}

// request returns the i-th request received and its body, or nil.
func (r *recorder) request(i int) (*http.Request, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.reqs) {
		return nil, nil
	}
	return r.reqs[i], r.bodies[i]
}

func TestEnvelopeHeaders(t *testing.T) {
	rec := &recorder{reply: cleanJSON}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newClient(t, srv.URL)

	m := testmsg.Parse(testmsg.Ham(), mail.Envelope{
		MailFrom:   "alice@example.org",
		Rcpts:      []string{"bob@example.net", "carol@example.net"},
		ClientIP:   netip.MustParseAddr("::ffff:192.0.2.10"),
		ClientName: "mail.example.org",
		Helo:       "helo.example.org\r\nX-Injected: 1",
		AuthUser:   "alice",
	})
	m.QueueID = "4ABC123"
	v, err := c.Scan(context.Background(), m)
	if err != nil || v.Outcome != scoring.Clean || v.Score != 1.5 || v.Threshold != 15 {
		t.Fatalf("Scan = %+v, %v", v, err)
	}
	req, body := rec.request(0)
	if req == nil {
		t.Fatal("the server got no request")
	}
	if req.Method != http.MethodPost || req.URL.Path != "/checkv2" {
		t.Errorf("request %s %s, want POST /checkv2", req.Method, req.URL.Path)
	}
	want := map[string][]string{
		"From": {"alice@example.org"}, "Rcpt": {"bob@example.net", "carol@example.net"},
		"Ip": {"192.0.2.10"}, "Helo": {"helo.example.orgX-Injected: 1"}, "Hostname": {"mail.example.org"},
		"Queue-Id": {"4ABC123"}, "User": {"alice"},
	}
	for k, vs := range want {
		if got := req.Header.Values(k); !slices.Equal(got, vs) {
			t.Errorf("header %s = %q, want %q", k, got, vs)
		}
	}
	if req.Header.Get("X-Injected") != "" {
		t.Error("a CRLF in the envelope injected a header")
	}
	r, _ := m.Open()
	raw, _ := io.ReadAll(r)
	if string(body) != string(raw) || req.ContentLength != m.Size() || len(req.TransferEncoding) != 0 {
		t.Errorf("body %d bytes, Content-Length %d, chunked %q; want the %d-byte message", len(body), req.ContentLength, req.TransferEncoding, m.Size())
	}

	// A message with no envelope (fpsafe check FILE) sends no envelope headers at all.
	if _, err := c.Scan(context.Background(), testmsg.Parse(testmsg.Ham(), mail.Envelope{})); err != nil {
		t.Fatal(err)
	}
	req, _ = rec.request(1)
	for k := range want {
		if vs := req.Header.Values(k); len(vs) != 0 {
			t.Errorf("empty envelope sent %s: %q", k, vs)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	srv := httptest.NewUnstartedServer(&recorder{reply: cleanJSON})
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, srv.URL)
	for i := range 10 {
		if v, err := scan(t, c, testmsg.Ham(), 2*time.Second); err != nil || v.Outcome != scoring.Clean {
			t.Fatalf("scan %d: %s, %v", i, v.Outcome, err)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("10 sequential scans opened %d connections, want them pooled (1)", n)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping on a pooled connection: %v", err)
	}
}

func TestMaxConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		io.Copy(io.Discard, r.Body)
		time.Sleep(50 * time.Millisecond)
		io.WriteString(w, cleanJSON)
	}))
	defer srv.Close()
	c, err := rspamd.New(scoring.EngineConfig{Name: "r", Type: "rspamd", Address: srv.URL, MaxConcurrency: 2}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := scan(t, c, testmsg.Ham(), 5*time.Second); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p > 2 || p < 1 {
		t.Errorf("peak of %d requests in flight, want at most max_concurrency 2", p)
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "rspamd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(&recorder{reply: cleanJSON})
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	c := newClient(t, "unix:"+sock)
	if v, err := scan(t, c, testmsg.Ham(), 2*time.Second); err != nil || v.Outcome != scoring.Clean {
		t.Fatalf("scan over unix socket: %s, %v", v.Outcome, err)
	}
}

func TestHTTPErrors(t *testing.T) {
	huge := `{"action":"no action","score":0,"x":"` + strings.Repeat("a", 1<<20) + `"}`
	tests := []struct {
		name, want string
		h          http.HandlerFunc
	}{
		{"500 with rspamd error", "invalid command", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"invalid command","error_domain":"protocol-error"}`, 500)
		}},
		{"503 plain", "503", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "busy", 503) }},
		{"200 with error field", "task timed out", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"error":"task timed out"}`)
		}},
		{"200 html", "bad reply", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "<html>hi</html>") }},
		{"reply above 1 MiB", "longer than", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, huge) }},
		{"redirect", "302", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }},
		{"unknown action", "unknown action", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"score":3,"required_score":15,"action":"discard"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			c := newClient(t, srv.URL)
			v, err := scan(t, c, testmsg.Ham(), 2*time.Second)
			if err == nil || v.Outcome != "" {
				t.Fatalf("Scan = %q, %v; want an error and no verdict", v.Outcome, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if err := c.Ping(context.Background()); err == nil {
				t.Error("Ping succeeded against a server that does not say pong")
			}
		})
	}
}

func TestFaults(t *testing.T) {
	const deadline = 500 * time.Millisecond
	okHTTP := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(cleanJSON)) + "\r\n\r\n" + cleanJSON
	tests := []struct {
		name string
		addr func(t testing.TB) string
	}{
		{"refused", enginetest.RefusedAddr},
		{"silent", func(t testing.TB) string { return enginetest.NewServer(t, enginetest.Silent).Addr }},
		{"garbage", func(t testing.TB) string { return enginetest.NewServer(t, enginetest.Garbage).Addr }},
		{"closed mid headers", func(t testing.TB) string {
			return enginetest.NewServer(t, enginetest.CloseMidReply("HTTP/1.1 200 OK\r\nContent-Ty")).Addr
		}},
		{"closed mid body", func(t testing.TB) string {
			return enginetest.NewServer(t, enginetest.CloseMidReply(okHTTP[:len(okHTTP)-20])).Addr
		}},
		{"closed mid body without length", func(t testing.TB) string {
			return enginetest.NewServer(t, enginetest.CloseMidReply("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"+cleanJSON[:40])).Addr
		}},
		{"late", func(t testing.TB) string { return enginetest.NewServer(t, enginetest.Late(okHTTP, 3*deadline)).Addr }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.addr(t))
			start := time.Now()
			v, err := scan(t, c, testmsg.Spam(), deadline)
			took := time.Since(start)
			if err == nil || v.Outcome != "" {
				t.Fatalf("Scan = %q, %v; want an error and no verdict", v.Outcome, err)
			}
			if took > deadline+2*time.Second {
				t.Errorf("Scan took %s, deadline %s", took, deadline)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			if err := c.Ping(ctx); err == nil {
				t.Error("Ping succeeded")
			}
		})
	}
}

// TestNoDeadline checks that a caller without a deadline still gets the engine's timeout.
func TestNoDeadline(t *testing.T) {
	srv := enginetest.NewServer(t, enginetest.Silent)
	c, err := rspamd.New(scoring.EngineConfig{Name: "r", Type: "rspamd", Address: srv.Addr, Timeout: 300 * time.Millisecond}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, err := c.Scan(context.Background(), testmsg.Parse(testmsg.Ham(), mail.Envelope{}))
	if err == nil || v.Outcome != "" || time.Since(start) > 2300*time.Millisecond {
		t.Fatalf("Scan without deadline = %q, %v after %s; want an error after the 300 ms timeout", v.Outcome, err, time.Since(start))
	}
}
