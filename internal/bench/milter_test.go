//go:build bench

package bench

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
)

// BenchmarkMilterConnPerMessage is milter/BenchmarkMilterPath the way Postfix drives a milter:
// a new milter connection (negotiation included) for every message, 20 in parallel, the
// lab's 1.2 KB ham, no engine. Postfix opens one milter connection per SMTP session, so
// with one message per session this is the per-message cost fpsafe sees in TestEndToEnd.
//
//	go test -run '^$' -bench ConnPerMessage -benchmem -cpuprofile cpu.out ./internal/bench/
func BenchmarkMilterConnPerMessage(b *testing.B) {
	cfg := milter.DefaultConfig()
	cfg.SpoolDir = b.TempDir()
	srv, err := milter.New(cfg, &policy.Pipeline{Config: policy.DefaultConfig()}, nil)
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
	_, body, _ := bytes.Cut(Ham(), []byte("\r\n\r\n")) // the header fields are benchHeader
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := milterMessage(ln.Addr().String(), body, 30*time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
