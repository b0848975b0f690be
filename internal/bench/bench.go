// Package bench holds fpsafe's load benchmarks against real Postfix and the classic
// milters (clamav-milter, spamass-milter, rspamd's proxy), and the memory measurements of
// the fpsafe binary. The heavy runs are behind the `bench` build tag (see
// scripts/bench.sh and `make bench`), so that `go test ./...` does not run them; docs/BENCHMARKS.md records the results.
package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EnvInt returns the integer in the environment variable name, or def.
func EnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// EnvDuration returns the duration in the environment variable name, or def.
func EnvDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// Ham returns a plain-text ham of about 1.2 KB with CRLF line ends, like the lab's ham.eml.
func Ham() []byte {
	var b strings.Builder
	b.WriteString("From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n" +
		"Subject: Quarterly figures meeting\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <bench-ham@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHi Bob,\r\n\r\n")
	para := "the quarterly figures are attached to the shared folder as usual. Could we go through\r\n" +
		"them on Thursday at ten? I would like to look at the travel budget and the new hires.\r\n\r\n"
	for i := 0; i < 5; i++ {
		b.WriteString(para)
	}
	b.WriteString("Thanks,\r\nAlice\r\n")
	return []byte(b.String())
}

// LF returns msg with CRLF replaced by LF: smtp-source -F adds the CR itself.
func LF(msg []byte) []byte { return bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")) }

// CPU is a reading of /proc/stat's first line, in clock ticks.
type CPU struct{ Busy, Total uint64 }

// ReadCPU reads the whole machine's busy and total time.
func ReadCPU() CPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPU{}
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	var c CPU
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		c.Total += v
		if i != 3 && i != 4 { // idle, iowait
			c.Busy += v
		}
	}
	return c
}

// BusySeconds returns the machine's busy CPU-seconds between a and b (USER_HZ = 100).
func BusySeconds(a, b CPU) float64 { return float64(b.Busy-a.Busy) / 100 }

// ProcMemory returns VmRSS and VmHWM of pid in bytes.
func ProcMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// ProcCPU returns the user+system CPU-seconds pid has used so far (USER_HZ = 100).
func ProcCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)  // field 14, utime
	st, _ := strconv.ParseUint(f[12], 10, 64) // field 15, stime
	return float64(u+st) / 100
}

// Sink is a counting SMTP sink on 127.0.0.1: what Postfix relays to. It keeps no message.
type Sink struct {
	Addr string
	ln   net.Listener
	n    atomic.Int64
	wg   sync.WaitGroup
}

// StartSink listens on a free loopback port.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.session(c)
		}
	}()
	return s, nil
}

// Count is the number of messages received so far.
func (s *Sink) Count() int64 { return s.n.Load() }

// Close stops accepting.
func (s *Sink) Close() { s.ln.Close(); s.wg.Wait() }

// WaitFor waits until the sink has received n messages in all, or timeout passes.
func (s *Sink) WaitFor(n int64, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); s.Count() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			return false
		}
	}
	return true
}

func (s *Sink) session(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	say := func(l string) bool {
		c.SetWriteDeadline(time.Now().Add(time.Minute))
		w.WriteString(l + "\r\n")
		return w.Flush() == nil
	}
	say("220 sink.bench.test ESMTP")
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-sink.bench.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 209715200")
		case "DATA":
			say("354 go ahead")
			for {
				l, err := r.ReadSlice('\n')
				if err == bufio.ErrBufferFull {
					continue
				}
				if err != nil {
					return
				}
				if bytes.Equal(l, []byte(".\r\n")) || bytes.Equal(l, []byte(".\n")) {
					break
				}
			}
			s.n.Add(1)
			say("250 2.0.0 Ok: stored")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("250 2.0.0 Ok")
		}
	}
}

// SMTPResult is what a load run of SendSMTP measured.
type SMTPResult struct {
	Latencies []time.Duration // per successful session: connect to the 250 after DATA
	Errors    int
	FirstErr  error
	Wall      time.Duration
}

// SendSMTP sends n copies of msg (CRLF) to addr, one message per SMTP session, conc sessions
// in parallel, each session bounded by timeout.
func SendSMTP(addr string, msg []byte, n, conc int, timeout time.Duration) SMTPResult {
	return load(n, conc, func() error { return smtpSession(addr, msg, timeout) })
}

// load runs n calls of one at conc in parallel and collects their latencies and errors.
func load(n, conc int, one func() error) SMTPResult {
	var (
		mu   sync.Mutex
		res  SMTPResult
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				err := one()
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Errors++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
				} else {
					res.Latencies = append(res.Latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	return res
}

func smtpSession(addr string, msg []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("want %s, got %q", code, strings.TrimSpace(l))
			}
			if len(l) > 3 && l[3] == ' ' {
				return nil
			}
		}
	}
	send := func(l string) error { _, err := io.WriteString(c, l+"\r\n"); return err }
	if err := expect("220"); err != nil {
		return err
	}
	for _, step := range [][2]string{
		{"EHLO client.bench.test", "250"}, {"MAIL FROM:<alice@example.org>", "250"},
		{"RCPT TO:<bob@example.net>", "250"}, {"DATA", "354"},
	} {
		if err := send(step[0]); err != nil {
			return err
		}
		if err := expect(step[1]); err != nil {
			return fmt.Errorf("%s: %w", step[0], err)
		}
	}
	body := bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n.."))
	if _, err := c.Write(append(body, ".\r\n"...)); err != nil {
		return err
	}
	if err := expect("250"); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	send("QUIT")
	return nil
}

// FakeClamd is an instant clamd: it reads each INSTREAM to its end and answers
// "stream: OK"; PING answers PONG.
type FakeClamd struct {
	Addr  string // "inet:127.0.0.1:PORT"
	ln    net.Listener
	Scans atomic.Int64
}

// StartFakeClamd listens on a free loopback port.
func StartFakeClamd() (*FakeClamd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &FakeClamd{Addr: "inet:" + ln.Addr().String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f, nil
}

// Close stops accepting.
func (f *FakeClamd) Close() { f.ln.Close() }

func (f *FakeClamd) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(c, 64<<10)
	cmd, err := r.ReadString(0)
	if err != nil {
		return
	}
	switch strings.TrimPrefix(strings.TrimRight(cmd, "\x00"), "z") {
	case "PING":
		io.WriteString(c, "PONG\x00")
	case "INSTREAM":
		var n [4]byte
		for {
			if _, err := io.ReadFull(r, n[:]); err != nil {
				return
			}
			size := binary.BigEndian.Uint32(n[:])
			if size == 0 {
				break
			}
			if _, err := io.CopyN(io.Discard, r, int64(size)); err != nil {
				return
			}
		}
		f.Scans.Add(1)
		io.WriteString(c, "stream: OK\x00")
	default:
		io.WriteString(c, "UNKNOWN COMMAND\x00")
	}
}

// SpamdCheck sends one SPAMC/1.5 CHECK of msg to addr ("HOST:PORT") and reads the answer.
func SpamdCheck(addr string, msg []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n", len(msg)); err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, []byte("SPAMD/")) || !bytes.Contains(b, []byte(" 0 EX_OK")) || !bytes.Contains(b, []byte("Spam:")) {
		return fmt.Errorf("spamd answered %q", b)
	}
	return nil
}

// SpamdLoad runs n CHECKs of msg at conc in parallel.
func SpamdLoad(addr string, msg []byte, n, conc int, timeout time.Duration) SMTPResult {
	return load(n, conc, func() error { return SpamdCheck(addr, msg, timeout) })
}

// Percentile returns the p-th percentile (0..100, nearest rank) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p/100*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// Median returns the median of xs (the mean of the middle two for an even count).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// EngineOutcomes reads fpsafe_engine_outcomes_total from a /metrics URL: engine -> outcome
// -> count.
func EngineOutcomes(url string) (map[string]map[string]float64, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := hc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "fpsafe_engine_outcomes_total{") {
			continue
		}
		labels, val, _ := strings.Cut(strings.TrimPrefix(l, "fpsafe_engine_outcomes_total{"), "} ")
		var eng, outc string
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "engine":
				eng = v
			case "outcome":
				outc = v
			}
		}
		n, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if out[eng] == nil {
			out[eng] = map[string]float64{}
		}
		out[eng][outc] += n
	}
	return out, sc.Err()
}
