package clamd

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/bytesize"
	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
)

func newClient(t testing.TB, addr string, maxSize bytesize.Size) *Client {
	t.Helper()
	c, err := New(scoring.EngineConfig{Name: "av", Type: "clamd", Address: addr, MaxSize: maxSize}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msg(raw []byte) *mail.Message { return testmsg.Parse(raw, mail.Envelope{}) }

// puaMessage carries the lab's PUA test string in a plain-text part.
func puaMessage() []byte {
	return testmsg.Attachment("Tool", "tool.txt", []byte("a harmless tool "+daemontest.PUATestString+" end\n"))
}

func scan(t *testing.T, c *Client, raw []byte) (scoring.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Scan(ctx, msg(raw))
}

func TestRealClamd(t *testing.T) {
	d := daemontest.StartClamd(t, daemontest.ClamdOptions{StreamMaxLength: "1M"})
	for _, addr := range []string{d.Addr, d.Unix} {
		c := newClient(t, addr, 0)
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			t.Run("eicar", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Virus())
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Virus || len(v.Details) != 1 || !strings.Contains(v.Details[0], "EICAR") {
					t.Fatalf("EICAR attachment: got %+v, want virus with an EICAR signature", v)
				}
			})
			t.Run("ham", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Ham())
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Clean || len(v.Details) != 0 {
					t.Fatalf("ham: got %+v, want clean", v)
				}
			})
			t.Run("pua", func(t *testing.T) {
				v, err := scan(t, c, puaMessage())
				if err != nil {
					t.Fatal(err)
				}
				// The client does not judge families: PUA.* is still Virus here.
				if v.Outcome != scoring.Virus || len(v.Details) != 1 || !strings.HasPrefix(v.Details[0], daemontest.PUASignature) {
					t.Fatalf("PUA string: got %+v, want virus %s...", v, daemontest.PUASignature)
				}
			})
			t.Run("above StreamMaxLength", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Big(2<<20))
				if err == nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "size limit exceeded") {
					t.Fatalf("2 MiB message, StreamMaxLength 1M: got %+v, %v; want clamd's size limit error", v, err)
				}
			})
			t.Run("ping and version", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				ver, err := c.Version(ctx)
				if err != nil || !strings.HasPrefix(ver, "ClamAV 1.") {
					t.Fatalf("Version = %q, %v; want ClamAV 1.x", ver, err)
				}
			})
		})
	}
}

// The client's own limit (max_size) stops a message before any byte is sent.
func TestClientLimit(t *testing.T) {
	d := daemontest.Clamd(t)
	c := newClient(t, d.Addr, 64<<10)
	v, err := scan(t, c, testmsg.Big(100<<10))
	if !errors.Is(err, ErrTooLarge) || v.Outcome != "" {
		t.Fatalf("100 KiB message, max_size 64 KiB: got %+v, %v; want ErrTooLarge", v, err)
	}
	if v, err := scan(t, c, testmsg.Virus()); err != nil || v.Outcome != scoring.Virus {
		t.Fatalf("small message under the limit: got %+v, %v", v, err)
	}
}

// Through the aggregator, a PUA.* hit becomes Suspicious and EICAR stays Virus.
func TestAggregatorReclassifiesPUA(t *testing.T) {
	d := daemontest.Clamd(t)
	cfg := scoring.EngineConfig{Name: "av", Type: "clamd", Address: d.Addr}.WithDefaults()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	agg := scoring.NewAggregator([]scoring.Configured{{Engine: c, Config: cfg}}, scoring.DefaultConfig(), nil)
	for _, tc := range []struct {
		raw  []byte
		want scoring.Outcome
	}{{puaMessage(), scoring.Suspicious}, {testmsg.Virus(), scoring.Virus}, {testmsg.Ham(), scoring.Clean}} {
		vs := agg.Scan(context.Background(), msg(tc.raw))
		if len(vs) != 1 || vs[0].Outcome != tc.want || vs[0].Engine != "av" {
			t.Errorf("aggregator: got %+v, want outcome %s", vs, tc.want)
		}
	}
}

// When clamd dies, the next scan fails fast (refused) instead of waiting for the deadline,
// and never says clean.
func TestClamdStopped(t *testing.T) {
	d := daemontest.Clamd(t)
	tcp, unix := newClient(t, d.Addr, 0), newClient(t, d.Unix, 0)
	for _, c := range []*Client{tcp, unix} {
		if v, err := scan(t, c, testmsg.Ham()); err != nil || v.Outcome != scoring.Clean {
			t.Fatalf("%s before stop: got %+v, %v", c.addr, v, err)
		}
	}
	d.Stop()
	for _, c := range []*Client{tcp, unix} {
		start := time.Now()
		v, err := scan(t, c, testmsg.Ham())
		if err == nil || v.Outcome == scoring.Clean {
			t.Fatalf("%s after stop: got %+v, %v; want an error", c.addr, v, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s after stop: error took %s, want a quick refusal", c.addr, took)
		}
		if c == tcp && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("inet after stop: %v, want connection refused", err)
		}
		if err := c.Ping(context.Background()); err == nil {
			t.Errorf("%s: Ping succeeded after stop", c.addr)
		}
	}
}

// benchScan scans raw against a fresh real clamd, one connection per scan as in production,
// and reports ms/op next to ns/op.
func benchScan(b *testing.B, raw []byte) {
	d := daemontest.Clamd(b)
	c := newClient(b, d.Addr, 0)
	m := msg(raw)
	b.SetBytes(m.Size())
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		v, err := c.Scan(ctx, m)
		cancel()
		if err != nil || v.Outcome != scoring.Clean {
			b.Fatalf("scan: %+v, %v", v, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

// BenchmarkScanHam is the common case: a 1 KB text message.
func BenchmarkScanHam(b *testing.B) { benchScan(b, testmsg.Ham()) }

// BenchmarkScan5MB is a message with a 5 MiB random attachment (about 7 MB base64).
func BenchmarkScan5MB(b *testing.B) { benchScan(b, testmsg.Big(5<<20)) }
