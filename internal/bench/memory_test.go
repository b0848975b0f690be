//go:build bench

package bench

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// milterMessage runs one full milter transaction of a message with the given body on a
// new connection, as Postfix would (body in 64 KiB chunks).
func milterMessage(addr string, body []byte, timeout time.Duration) error {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ActionMask:  gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptChangeBody,
		ReadTimeout: timeout, WriteTimeout: timeout,
	})
	s, err := c.Session()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Conn("mx.example.org", gomilter.FamilyInet, 25, "192.0.2.7"); err != nil {
		return err
	}
	return milterTransaction(s, body)
}

var benchHeader = [][2]string{
	{"From", " Alice <alice@example.org>"}, {"To", " bob@example.net"}, {"Subject", " Quarterly figures"},
	{"Date", " Mon, 2 Nov 2026 10:00:00 +0000"}, {"Message-ID", " <bench@example.org>"},
	{"MIME-Version", " 1.0"}, {"Content-Type", " text/plain; charset=utf-8"},
}

func milterTransaction(s *gomilter.ClientSession, body []byte) error {
	if _, err := s.Mail("<alice@example.org>", nil); err != nil {
		return err
	}
	if _, err := s.Rcpt("<bob@example.net>", nil); err != nil {
		return err
	}
	for _, f := range benchHeader {
		if _, err := s.HeaderField(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		return err
	}
	for len(body) > 0 {
		n := min(len(body), 65535)
		if _, err := s.BodyChunk(body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	_, act, err := s.End()
	if err != nil {
		return err
	}
	if act.Code != gomilter.ActContinue && act.Code != gomilter.ActAccept {
		return fmt.Errorf("end of message: action %c", act.Code)
	}
	return s.Abort()
}

// textBody returns about size bytes of CRLF text lines.
func textBody(size int) []byte {
	line := []byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n")
	return bytes.Repeat(line, size/len(line)+1)[:size/len(line)*len(line)]
}

// TestMemoryPeak measures fpsafe's peak RSS (VmHWM) with 200 concurrent 10 MB messages,
// then in a fresh process with one 100 MB message. The engine is an instant fake clamd that
// reads each stream to its end (clamd's max_size 25MiB: the 100 MB message is skipped for it).
func TestMemoryPeak(t *testing.T) {
	fc, err := StartFakeClamd()
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	sessions := EnvInt("BENCH_MEM_SESSIONS", 200)
	for _, c := range []struct {
		name  string
		conc  int
		size  int
		limit int64
	}{
		{fmt.Sprintf("%dx10MB", sessions), sessions, 10 << 20, 150 << 20},
		{"1x100MB", 1, 100 << 20, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := startFpsafe(t, "60s", engineConf{name: "clamd", typ: "clamd", addr: fc.Addr, extra: []string{`timeout = "50s"`}})
			_, base, _ := ProcMemory(f.Pid())
			body := textBody(c.size)
			var wg sync.WaitGroup
			var errs atomic.Int64
			var firstErr atomic.Value
			before := fc.Scans.Load()
			start := time.Now()
			for i := 0; i < c.conc; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := milterMessage(f.Addr, body, 120*time.Second); err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}()
			}
			wg.Wait()
			wall := time.Since(start)
			rss, hwm, err := ProcMemory(f.Pid())
			if err != nil {
				t.Fatal(err)
			}
			scanned := fc.Scans.Load() - before
			line := fmt.Sprintf("BENCH memory %s: VmHWM %.1f MiB (idle before: %.1f MiB), VmRSS after %.1f MiB, %d messages in %s, %d errors (%v), %d scanned by the fake clamd",
				c.name, mib(hwm), mib(base), mib(rss), c.conc, wall.Round(time.Millisecond), errs.Load(), firstErr.Load(), scanned)
			t.Log(line)
			fmt.Println(line)
			if errs.Load() > 0 {
				t.Errorf("%d of %d transactions failed", errs.Load(), c.conc)
			}
			if c.limit > 0 && hwm > c.limit {
				// A missed target is a finding for docs/BENCHMARKS.md, not a broken benchmark.
				t.Logf("TARGET MISSED: VmHWM %.1f MiB above the %.0f MiB target", mib(hwm), mib(c.limit))
			}
		})
	}
}

// TestSteadyRSS drives a steady load (20 connections, 10 kB messages, instant engine) for
// BENCH_STEADY (default 10m) and compares VmRSS after the first minute (or half of the
// run, whichever is shorter) with VmRSS at the end.
func TestSteadyRSS(t *testing.T) {
	dur := EnvDuration("BENCH_STEADY", 10*time.Minute)
	fc, err := StartFakeClamd()
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	f := startFpsafe(t, "8s", engineConf{name: "clamd", typ: "clamd", addr: fc.Addr})
	body := textBody(10 << 10)
	warm := min(time.Minute, dur/2)
	stop := make(chan struct{})
	var sent, errs atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := milterMessage(f.Addr, body, 30*time.Second); err != nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	start := time.Now()
	var samples []string
	var first int64
	tick := time.NewTicker(min(30*time.Second, dur/8))
	defer tick.Stop()
	firstTaken := false
	for time.Since(start) < dur {
		<-tick.C
		rss, _, _ := ProcMemory(f.Pid())
		samples = append(samples, fmt.Sprintf("%s=%.1f", time.Since(start).Round(time.Second), mib(rss)))
		if !firstTaken && time.Since(start) >= warm {
			first, firstTaken = rss, true
		}
	}
	close(stop)
	wg.Wait()
	last, hwm, _ := ProcMemory(f.Pid())
	rate := float64(sent.Load()) / time.Since(start).Seconds()
	line := fmt.Sprintf("BENCH steady %s: VmRSS after %s %.1f MiB, at the end %.1f MiB (growth %+.1f%%), VmHWM %.1f MiB, %d messages (%.0f msg/s), %d errors; samples MiB: %v",
		dur, warm, mib(first), mib(last), 100*(float64(last)-float64(first))/float64(first), mib(hwm), sent.Load(), rate, errs.Load(), samples)
	t.Log(line)
	fmt.Println(line)
	if errs.Load() > 0 {
		t.Errorf("%d transactions failed", errs.Load())
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
