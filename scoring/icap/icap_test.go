package icap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
)

func newClient(t testing.TB, cfg scoring.EngineConfig) *Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "icap"
	}
	cfg.Type = "icap"
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func msg(raw []byte) *mail.Message { return testmsg.Parse(raw, mail.Envelope{}) }

func scan(t testing.TB, c *Client, raw []byte) (scoring.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Scan(ctx, msg(raw))
}

// eicarName is how clamd (through c-icap) names testmsg.Virus().
const eicarName = daemontest.EICARSignature + ".UNOFFICIAL"

func TestRealCICAP(t *testing.T) {
	ci := daemontest.StartCICAP(t, daemontest.Clamd(t))
	for _, cfg := range []scoring.EngineConfig{
		{Address: ci.URL},
		{Address: ci.Addr, Service: ci.Service},
	} {
		c := newClient(t, cfg)
		t.Run(cfg.Address, func(t *testing.T) {
			t.Run("eicar", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Virus())
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Virus || len(v.Details) != 1 || v.Details[0] != eicarName {
					t.Fatalf("EICAR attachment: got %+v, want virus %s", v, eicarName)
				}
			})
			t.Run("ham", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Ham())
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Clean || len(v.Details) != 1 || !strings.HasPrefix(v.Details[0], "istag=CI0001-") {
					t.Fatalf("ham: got %+v, want clean with c-icap's ISTag", v)
				}
			})
			t.Run("5MB", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Big(5<<20))
				if err != nil || v.Outcome != scoring.Clean {
					t.Fatalf("5 MiB attachment: got %+v, %v; want clean", v, err)
				}
			})
			t.Run("EICAR in 5MB", func(t *testing.T) {
				raw := testmsg.Big(5 << 20)
				raw = append(raw[:len(raw)-len("--b1--\r\n")], testmsg.Virus()[bytes.Index(testmsg.Virus(), []byte("--b1\r\nContent-Type: application")):]...)
				v, err := scan(t, c, raw)
				if err != nil || v.Outcome != scoring.Virus || len(v.Details) != 1 || v.Details[0] != eicarName {
					t.Fatalf("5 MiB + EICAR: got %+v, %v; want virus %s", v, err, eicarName)
				}
			})
		})
	}
}

// OPTIONS are read: c-icap's virus_scan asks for a 1024-byte preview, allows 204 and
// names its ISTag, which is also the clean verdict's detail.
func TestRealOptions(t *testing.T) {
	ci := daemontest.StartCICAP(t, daemontest.Clamd(t))
	c := newClient(t, scoring.EngineConfig{Address: ci.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	o, err := c.Options(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^CI0001-[A-Za-z0-9+/=-]+$`).MatchString(o.ISTag) || o.Preview != 1024 || !o.Allow204 ||
		!hasToken(o.Methods, "RESPMOD") || o.TTL != time.Hour || !strings.Contains(o.Service, "Antivirus") {
		t.Fatalf("Options = %+v; want c-icap's ISTag, Preview 1024, Allow 204, RESPMOD, TTL 1h", o)
	}
	v, err := scan(t, c, testmsg.Ham())
	if err != nil || v.Outcome != scoring.Clean || len(v.Details) != 1 || v.Details[0] != "istag="+o.ISTag {
		t.Fatalf("ham: got %+v, %v; want clean with istag=%s", v, err, o.ISTag)
	}
}

// recorder is a TCP proxy in front of a server that keeps what went each way.
type recorder struct {
	Addr string
	mu   sync.Mutex
	conn int
	up   bytes.Buffer // client to server, all connections
	down bytes.Buffer // server to client
}

func newRecorder(t *testing.T, target string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &recorder{Addr: "inet:" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", strings.TrimPrefix(target, "inet:"))
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conn++
			r.mu.Unlock()
			copyRec := func(dst, src net.Conn, buf *bytes.Buffer) {
				b := make([]byte, 32<<10)
				for {
					n, err := src.Read(b)
					if n > 0 {
						r.mu.Lock()
						if buf.Len() < 1<<20 {
							buf.Write(b[:min(n, 1<<20-buf.Len())])
						}
						r.mu.Unlock()
						dst.Write(b[:n])
					}
					if err != nil {
						dst.Close()
						src.Close()
						return
					}
				}
			}
			go copyRec(s, c, &r.up)
			go copyRec(c, s, &r.down)
		}
	}()
	return r
}

func (r *recorder) get() (conns int, up, down string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn, r.up.String(), r.down.String()
}

// The wire exchange with c-icap: a message that fits in the preview is sent whole with
// ieof and answered 204; a larger clean one gets 100 Continue, the rest, then 204; every
// request of the sequence goes over one kept-alive connection.
func TestRealPreview(t *testing.T) {
	ci := daemontest.StartCICAP(t, daemontest.Clamd(t))
	rec := newRecorder(t, ci.Addr)
	c := newClient(t, scoring.EngineConfig{Address: rec.Addr, Service: ci.Service})
	for _, raw := range [][]byte{testmsg.Ham(), testmsg.Big(64 << 10), testmsg.Ham()} {
		if v, err := scan(t, c, raw); err != nil || v.Outcome != scoring.Clean {
			t.Fatalf("got %+v, %v; want clean", v, err)
		}
	}
	conns, up, down := rec.get()
	if conns != 1 {
		t.Errorf("%d connections, want 1 kept alive", conns)
	}
	if n := strings.Count(up, "RESPMOD icap://"); n != 3 || strings.Count(up, "OPTIONS icap://") != 1 {
		t.Errorf("sent %d RESPMOD, %d OPTIONS; want 3 and 1", n, strings.Count(up, "OPTIONS icap://"))
	}
	if n := strings.Count(up, "\r\nPreview: 1024\r\n"); n != 3 {
		t.Errorf("%d requests with Preview: 1024, want 3", n)
	}
	if n := strings.Count(up, "\r\n0; ieof\r\n\r\n"); n != 2 {
		t.Errorf("%d previews with ieof, want 2 (the two small messages)", n)
	}
	statuses := regexp.MustCompile(`ICAP/1\.0 (\d{3})`).FindAllStringSubmatch(down, -1)
	var got []string
	for _, s := range statuses {
		got = append(got, s[1])
	}
	if want := "200 204 100 204 204"; strings.Join(got, " ") != want {
		t.Errorf("answers %q, want %q (OPTIONS, ham, big: continue then 204, ham)", strings.Join(got, " "), want)
	}
}

// Through the aggregator, a c-icap verdict is like any engine's; when c-icap is gone the
// next scan is a quick error, never clean.
func TestRealAggregatorAndStop(t *testing.T) {
	ci := daemontest.StartCICAP(t, daemontest.Clamd(t))
	cfg := scoring.EngineConfig{Name: "cicap", Type: "icap", Address: ci.URL}.WithDefaults()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	agg := scoring.NewAggregator([]scoring.Configured{{Engine: c, Config: cfg}}, scoring.DefaultConfig(), nil)
	for _, tc := range []struct {
		raw  []byte
		want scoring.Outcome
	}{{testmsg.Virus(), scoring.Virus}, {testmsg.Ham(), scoring.Clean}} {
		vs := agg.Scan(context.Background(), msg(tc.raw))
		if vs[0].Outcome != tc.want || vs[0].Engine != "cicap" || vs[0].Type != "icap" {
			t.Errorf("got %+v, want %s", vs[0], tc.want)
		}
	}
	ci.Stop()
	start := time.Now()
	v, err := scan(t, c, testmsg.Ham())
	if err == nil || v.Outcome == scoring.Clean {
		t.Fatalf("after stop: got %+v, %v; want an error", v, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("after stop: error took %s", took)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after stop: %v, want connection refused", err)
	}
	if err := c.Ping(context.Background()); err == nil {
		t.Error("Ping after stop: no error")
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ addr, service, dial, uri string }{
		{"icap://10.0.0.1:1345/avscan", "", "10.0.0.1:1345", "icap://10.0.0.1:1345/avscan"},
		{"icap://av.example/srv_clamav?allow204=on", "", "av.example:1344", "icap://av.example/srv_clamav?allow204=on"},
		{"icap://av.example", "respmod", "av.example:1344", "icap://av.example/respmod"},
		{"icap://av.example/", "", "av.example:1344", "icap://av.example/avscan"},
		{"inet:127.0.0.1:1344", "", "127.0.0.1:1344", "icap://127.0.0.1:1344/avscan"},
		{"inet:127.0.0.1:1344", "/SYMCScanResp-AV", "127.0.0.1:1344", "icap://127.0.0.1:1344/SYMCScanResp-AV"},
		{"unix:/run/icap.sock", "av", "/run/icap.sock", "icap://localhost/av"},
	} {
		_, dial, uri, _, err := parseTarget(tc.addr, tc.service)
		if err != nil || dial != tc.dial || uri != tc.uri {
			t.Errorf("parseTarget(%q, %q) = %q, %q, %v; want %q, %q", tc.addr, tc.service, dial, uri, err, tc.dial, tc.uri)
		}
	}
	for _, tc := range [][2]string{{"icap://a/x", "y"}, {"http://a/x", ""}, {"icap://", ""}, {"inet:a:1", "a b"}, {"nope", ""}} {
		if _, _, _, _, err := parseTarget(tc[0], tc[1]); err == nil {
			t.Errorf("parseTarget(%q, %q): no error", tc[0], tc[1])
		}
	}
}

func TestDetector(t *testing.T) {
	d := newDetector(nil, nil)
	for _, tc := range []struct {
		h          header
		viruses    string
		violations string
	}{
		{header{"X-Infection-Found": {"Type=0; Resolution=2; Threat=Eicar-Test-Signature;"}}, "Eicar-Test-Signature", ""},
		{header{"X-Infection-Found": {"Type=1; Resolution=2; Threat=Blocked file type;"}}, "", "Blocked file type"},
		{header{"X-Infection-Found": {"Type=0; Resolution=2; Threat=;"}}, "Type=0; Resolution=2; Threat=;", ""},
		{header{"X-Virus-Id": {"EICAR-Test-File"}}, "EICAR-Test-File", ""},
		{header{"X-Virus-Id": {"-"}}, "", ""},
		{header{"X-Violations-Found": {"1\n-\nLab.EICAR\n0\n0"}, "X-Infection-Found": {"Type=0; Resolution=2; Threat=Lab.EICAR;"}}, "Lab.EICAR", ""},
		{header{"X-Violations-Found": {"0"}}, "", ""},
		{header{"X-Violations-Found": {"something odd"}}, "something odd", ""},
		{header{"X-Other": {"Eicar"}}, "", ""},
	} {
		f := d.find(tc.h)
		if strings.Join(f.viruses, "|") != tc.viruses || strings.Join(f.violations, "|") != tc.violations {
			t.Errorf("find(%v) = %q, %q; want %q, %q", tc.h, f.viruses, f.violations, tc.viruses, tc.violations)
		}
	}
	custom := newDetector([]string{"x-virus-name"}, []string{})
	if f := custom.find(header{"X-Virus-Name": {"Mal/Foo-A"}, "X-Infection-Found": {"Type=0; Threat=ignored;"}}); strings.Join(f.viruses, "|") != "Mal/Foo-A" {
		t.Errorf("custom headers: %q", f.viruses)
	}
}

func TestParseEncapsulated(t *testing.T) {
	for _, ok := range []string{"res-hdr=0, res-body=161", "null-body=0", "res-hdr=0, null-body=30", "req-hdr=0, res-hdr=40, res-body=90", "opt-body=0"} {
		if _, err := parseEncapsulated(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "res-body=0, res-hdr=10", "res-hdr=10, res-body=5", "res-hdr=0", "foo=0", "res-hdr=x, null-body=0", "res-hdr=0, res-body=999999"} {
		if _, err := parseEncapsulated(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// readChunked stops at its limit and reads the trailer of a finished body.
func TestReadChunked(t *testing.T) {
	br := bufioReader("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT")
	var out bytes.Buffer
	n, err := readChunked(br, &out, 100)
	rest, _ := io.ReadAll(br)
	if err != nil || n != 11 || out.String() != "hello world" || string(rest) != "NEXT" {
		t.Fatalf("got %d %q %v, rest %q", n, out.String(), err, rest)
	}
	if _, err := readChunked(bufioReader("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), io.Discard, 8); !errors.Is(err, errTooLong) {
		t.Errorf("over the limit: %v", err)
	}
	for _, bad := range []string{"zz\r\n", "5\r\nhel", "5\r\nhelloXX0\r\n\r\n", ""} {
		if _, err := readChunked(bufioReader(bad), io.Discard, 100); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
