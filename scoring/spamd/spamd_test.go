package spamd

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
)

func newClient(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	c, err := New(scoring.EngineConfig{Type: "spamd", Address: addr}.WithDefaults(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func scan(t testing.TB, c *Client, raw []byte, timeout time.Duration) (scoring.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Scan(ctx, testmsg.Parse(raw, mail.Envelope{}))
}

// TestRealSpamd runs the client against a real spamd, over TCP and over its unix socket.
func TestRealSpamd(t *testing.T) {
	d := daemontest.StartSpamd(t)
	for _, addr := range []string{d.Addr, d.Socket} {
		c := newClient(t, addr)
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			t.Run("gtube", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Spam(), 20*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Spam || v.Score < 1000 || v.Threshold != 5 {
					t.Errorf("GTUBE: got %s %.1f/%.1f, want spam >= 1000/5", v.Outcome, v.Score, v.Threshold)
				}
				if !slices.Contains(v.Details, "GTUBE") || !slices.IsSorted(v.Details) {
					t.Errorf("GTUBE details %q: want sorted symbols with GTUBE", v.Details)
				}
			})
			t.Run("ham", func(t *testing.T) {
				v, err := scan(t, c, testmsg.Ham(), 20*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if v.Outcome != scoring.Clean || v.Score >= v.Threshold || v.Threshold != 5 {
					t.Errorf("ham: got %s %.1f/%.1f (%q), want clean below 5", v.Outcome, v.Score, v.Threshold, v.Details)
				}
			})
			t.Run("ping", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.Ping(ctx); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
	t.Run("5MB", func(t *testing.T) {
		raw := testmsg.Big(5 << 20)
		v, err := scan(t, newClient(t, d.Addr), raw, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Outcome.Answered() || v.Threshold != 5 {
			t.Errorf("%d-byte message: got %s %.1f/%.1f, want an answer with threshold 5", len(raw), v.Outcome, v.Score, v.Threshold)
		}
		// spamd logs the size it read, just after it replies; it must be the whole message.
		want := "size=" + strconv.Itoa(len(raw)) + ","
		for i := 0; i < 50 && !strings.Contains(d.Proc.Output(), want); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(d.Proc.Output(), want) {
			t.Errorf("spamd log has no %q: the message was not read whole", want)
		}
	})
	t.Run("commands", func(t *testing.T) {
		for _, tc := range []struct {
			cmd  Command
			want []string // rules that must be in Details; nil = Details empty
		}{{Check, nil}, {Symbols, []string{"GTUBE"}}, {Report, []string{"GTUBE"}}} {
			v, err := scan(t, newClient(t, d.Addr, WithCommand(tc.cmd), WithUser("fpsafe")), testmsg.Spam(), 20*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", tc.cmd, err)
			}
			if v.Outcome != scoring.Spam || v.Score < 1000 {
				t.Errorf("%s: got %s %.1f", tc.cmd, v.Outcome, v.Score)
			}
			if tc.want == nil && len(v.Details) != 0 {
				t.Errorf("%s: details %q, want none", tc.cmd, v.Details)
			}
			for _, r := range tc.want {
				if !slices.Contains(v.Details, r) || !slices.IsSorted(v.Details) {
					t.Errorf("%s: details %q, want sorted with %s", tc.cmd, v.Details, r)
				}
			}
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		for _, delta := range []int64{-10, +10} {
			m := lyingMessage(testmsg.Ham(), delta)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := newClient(t, d.Addr).Scan(ctx, m)
			cancel()
			if err == nil || !strings.Contains(err.Error(), "size") {
				t.Errorf("size off by %d: got %+v, %v; want a size error", delta, v, err)
			}
		}
	})
}

// TestRealSpamdStopped checks that a stopped spamd gives errors, not verdicts.
func TestRealSpamdStopped(t *testing.T) {
	d := daemontest.StartSpamd(t)
	c := newClient(t, d.Addr)
	if _, err := scan(t, c, testmsg.Ham(), 20*time.Second); err != nil {
		t.Fatalf("before stop: %v", err)
	}
	d.Stop()
	start := time.Now()
	v, err := scan(t, c, testmsg.Spam(), 2*time.Second)
	if err == nil {
		t.Fatalf("after stop: got verdict %+v, want an error", v)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("after stop: error took %s", time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Error("Ping after stop: want an error")
	}
}

// benchScan measures one sequential SYMBOLS scan of raw against a fresh real spamd.
func benchScan(b *testing.B, raw []byte) {
	d := daemontest.StartSpamd(b)
	c := newClient(b, d.Addr)
	m := testmsg.Parse(raw, mail.Envelope{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := c.Scan(ctx, m); err != nil { // warm up: the child's first scan loads more
		b.Fatal(err)
	}
	b.SetBytes(m.Size())
	b.ResetTimer()
	for b.Loop() {
		if v, err := c.Scan(ctx, m); err != nil || !v.Outcome.Answered() {
			b.Fatalf("scan: %+v, %v", v, err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op")
}

// BenchmarkScanHam is the latency of one small message (1.2 KB).
func BenchmarkScanHam(b *testing.B) { benchScan(b, testmsg.Ham()) }

// BenchmarkScan5MB is the latency of a message with a 5 MiB attachment (about 7 MB).
func BenchmarkScan5MB(b *testing.B) { benchScan(b, testmsg.Big(5<<20)) }
