package milter_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// reader is an engine that reads every byte of the message, as a real engine would, and
// says clean: it proves that hostile messages can be streamed to engines.
type reader struct{ bytes int64 }

func (r *reader) Name() string { return "reader" }
func (r *reader) Scan(ctx context.Context, m *mail.Message) (scoring.Verdict, error) {
	rc, err := m.Open()
	if err != nil {
		return scoring.Verdict{}, err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	r.bytes = n
	return scoring.Verdict{Outcome: scoring.Clean}, err
}

func readerPipeline(e *reader) *policy.Pipeline {
	c := scoring.EngineConfig{Name: "reader", Type: "clamd", Address: "inet:127.0.0.1:1", MaxSize: 1 << 40}.WithDefaults()
	return &policy.Pipeline{Engines: scoring.NewAggregator([]scoring.Configured{{Engine: e, Config: c}}, scoring.DefaultConfig(), nil), Config: policy.DefaultConfig()}
}

// sendStream is send() with the body produced by a reader, so that a 100 MB body never
// sits in the test's memory either.
func sendStream(t *testing.T, s *gomilter.ClientSession, hdr [][2]string, body io.Reader) []gomilter.ModifyAction {
	t.Helper()
	ok(t)(s.Mail("<a@example.org>", nil))
	ok(t)(s.Rcpt("<b@example.net>", nil))
	for _, f := range hdr {
		ok(t)(s.HeaderField(f[0], f[1]))
	}
	ok(t)(s.HeaderEnd())
	buf := make([]byte, 65535)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			ok(t)(s.BodyChunk(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mods, act, err := s.End()
	if err != nil || act.Code != gomilter.ActContinue {
		t.Fatalf("end: %v %v", act, err)
	}
	return mods
}

func nested(depth int) string {
	var b strings.Builder
	for i := range depth {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i, i+1)
	}
	b.WriteString("--b" + fmt.Sprint(depth) + "\r\nContent-Type: text/plain\r\n\r\ndeep\r\n")
	for i := depth; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func zipBomb(t *testing.T) string {
	var z bytes.Buffer
	w := zip.NewWriter(&z)
	f, _ := w.Create("zeros.bin")
	zeros := make([]byte, 1<<20)
	for range 32 { // 32 MiB of zeros in a 32 KB zip: fpsafe must not unpack it
		f.Write(zeros)
	}
	w.Close()
	return "--z\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--z\r\nContent-Type: application/zip; name=\"bomb.zip\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(z.Bytes()) + "\r\n--z--\r\n"
}

// Hostile messages are all delivered with a verdict, none crashes the session, and each
// body reaches the engine whole; fpsafe itself never unpacks anything.
func TestHostileMessages(t *testing.T) {
	e := &reader{}
	cfg := milter.DefaultConfig()
	h := start(t, cfg, readerPipeline(e))
	s := h.session(t)
	many := make([][2]string, 0, 10002)
	for i := range 10000 {
		many = append(many, [2]string{fmt.Sprintf("X-H%d", i), " v"})
	}
	cases := []struct {
		name string
		hdr  [][2]string
		body io.Reader
		size int64 // body bytes the engine must see (0 = do not check)
	}{
		{"10000 headers", append(many, stdHeader...), strings.NewReader("x\r\n"), 0},
		{"1 MB header line", append([][2]string{{"X-Long", " " + strings.Repeat("a", 1000000)}}, stdHeader...), strings.NewReader("x\r\n"), 0},
		{"100 levels of nested multipart", append([][2]string{{"Content-Type", ` multipart/mixed; boundary="b0"`}}, stdHeader...), strings.NewReader(nested(100)), 0},
		{"NUL bytes and invalid UTF-8", [][2]string{{"From", " a\x00b@example.org"}, {"Subject", " \xff\xfe\x00bad"}}, strings.NewReader("\x00\xff\xc3\x28body\r\n"), 0},
		{"no From", [][2]string{{"Subject", " no author"}}, strings.NewReader("x\r\n"), 0},
		{"two From", append([][2]string{{"From", " ceo@example.org"}}, stdHeader...), strings.NewReader("x\r\n"), 0},
		{"zip bomb attachment", append([][2]string{{"Content-Type", ` multipart/mixed; boundary="z"`}}, stdHeader...), strings.NewReader(zipBomb(t)), 0},
		{"100 MB body", stdHeader, io.LimitReader(zeroCRLF{}, 100<<20), 100 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mods := sendStream(t, s, c.hdr, c.body)
			a := added(mods)
			if !strings.HasPrefix(a["X-FPSafe-Verdict"], " clean;") {
				t.Fatalf("verdict %q (all: %v)", a["X-FPSafe-Verdict"], a)
			}
			if c.size > 0 && e.bytes < c.size {
				t.Fatalf("engine saw %d bytes, want at least %d", e.bytes, c.size)
			}
			if ents, _ := os.ReadDir(h.srv.SpoolDir()); len(ents) != 0 {
				t.Fatalf("spool files left: %v", ents)
			}
		})
	}
	waitInFlight(t, h.srv, 0)
}

// zeroCRLF is an endless body of short lines.
type zeroCRLF struct{}

func (zeroCRLF) Read(p []byte) (int, error) {
	for i := range p {
		if i%64 == 63 {
			p[i] = '\n'
		} else if i%64 == 62 {
			p[i] = '\r'
		} else {
			p[i] = 'A'
		}
	}
	return len(p), nil
}
