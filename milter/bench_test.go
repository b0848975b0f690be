package milter_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// BenchmarkMilterPath measures fpsafe's milter path without an MTA: go-milter's client as
// the load generator, 32 connections, 10 kB messages, each a full transaction (MAIL, RCPT,
// 8 header fields, body, end-of-message with fpsafe's header edits). It reports msg/s;
// -benchmem gives allocations per message.
//
//	go test -run '^$' -bench MilterPath -benchmem -benchtime 20000x ./milter/
func BenchmarkMilterPath(b *testing.B) {
	for _, c := range []struct {
		name string
		p    *policy.Pipeline
	}{
		{"no-engines", &policy.Pipeline{Config: policy.DefaultConfig()}},
		{"instant-engine", pipeline(scoring.Verdict{Outcome: scoring.Clean})},
	} {
		b.Run(c.name, func(b *testing.B) { benchPath(b, c.p) })
	}
}

func benchPath(b *testing.B, p *policy.Pipeline) {
	cfg := milter.DefaultConfig()
	cfg.SpoolDir = b.TempDir()
	srv, err := milter.New(cfg, p, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	const conns = 32
	body := []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n", 137)) // ~10 kB
	hdr := [][2]string{
		{"Received", " from mx.example.org (mx.example.org [192.0.2.7]) by mx.example.net"},
		{"From", " Alice <alice@example.org>"}, {"To", " bob@example.net"}, {"Subject", " Quarterly figures"},
		{"Date", " Mon, 2 Nov 2026 10:00:00 +0000"}, {"Message-ID", " <bench@example.org>"},
		{"MIME-Version", " 1.0"}, {"Content-Type", " text/plain; charset=utf-8"},
	}
	sessions := make([]*gomilter.ClientSession, conns)
	for i := range sessions {
		c := gomilter.NewClientWithOptions("tcp", ln.Addr().String(), gomilter.ClientOptions{
			ActionMask:  gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		})
		s, err := c.Session()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Conn("mx.example.org", gomilter.FamilyInet, 25, "192.0.2.7"); err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := transaction(s, hdr, body); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// transaction is one message as Postfix sends it, ABORT after end-of-message included.
func transaction(s *gomilter.ClientSession, hdr [][2]string, body []byte) error {
	if _, err := s.Mail("<alice@example.org>", nil); err != nil {
		return err
	}
	if _, err := s.Rcpt("<bob@example.net>", nil); err != nil {
		return err
	}
	for _, f := range hdr {
		if _, err := s.HeaderField(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		return err
	}
	if _, err := s.BodyChunk(body); err != nil {
		return err
	}
	mods, act, err := s.End()
	if err != nil {
		return err
	}
	if act.Code != gomilter.ActContinue || len(mods) < 2 {
		return errUnexpected
	}
	return s.Abort()
}

var errUnexpected = &net.OpError{Op: "milter", Err: context.Canceled}
