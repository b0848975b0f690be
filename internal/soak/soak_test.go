//go:build soak

package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/smtptest"
	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// Tolerances of the resource check: fpsafe's figures after the chaos and a quiet minute
// against the figures taken after warm-up. RSS: a Go heap returns memory to the OS lazily
// and a restarted fpsafe has a fresh heap, so the bound is loose (x1.5 + 16 MiB) and
// catches a leak that grows with traffic, not a few pages. Threads: the Go runtime never
// ends an OS thread it started for a blocking syscall, so a few more are allowed. Open files:
// listeners, epoll, log and the redis pool; anything left over from a dead session or a dead
// engine connection shows up here.
const (
	rssFactor    = 1.5
	rssSlackKiB  = 16 << 10
	threadsSlack = 4
	fdsSlack     = 4
	senders      = 3
	sendPause    = 300 * time.Millisecond // per sender between messages: bounded rate
	drainWait    = 5 * time.Minute
	quietPeriod  = time.Minute
	sender       = "soak-sender@soak.test"
)

func TestSoak(t *testing.T) {
	minutes := 10
	if s := os.Getenv("SOAK_MINUTES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOAK_MINUTES=%q: want a positive integer", s)
		}
		minutes = n
	}
	start := time.Now()
	bin := buildFpsafe(t)
	spamd := daemontest.StartSpamd(t)
	rspamd := daemontest.StartRspamd(t)
	clamd := daemontest.Clamd(t)
	redis := daemontest.StartRedis(t)
	snk := smtptest.StartSink(t)
	fp := newFpsafe(t, bin, clamd.Addr, spamd.Addr, rspamd.Addr, redis.Addr)
	fp.seedAllowlist()
	fp.start()
	pf := daemontest.StartPostfix(t, daemontest.PostfixOptions{Milter: "inet:" + fp.addr, RelayHost: snk.Addr})
	t.Logf("ready in %s: postfix %s, fpsafe %s (metrics %s), sink %s, redis %s",
		time.Since(start).Round(time.Millisecond), pf.Addr, fp.addr, fp.metrics, snk.Addr, redis.Addr)

	l := &ledger{}
	// Warm-up: every kind of message scanned a few times, then the starting level.
	var seq atomic.Int64
	sendOne := func() {
		kind, raw := pick(int(seq.Add(1)))
		o := l.newOffer(kind)
		if err := smtptest.Send(pf.Addr, sender, o.Rcpt, raw, 120*time.Second); err != nil {
			o.Err, o.Out = err, outRejected
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				sendOne()
			}
		}()
	}
	wg.Wait()
	settle(t, pf, snk, l, drainWait)
	time.Sleep(10 * time.Second)
	before := sample(t, fp.pid())
	t.Logf("warm-up: %d messages; fpsafe pid %d: %s", len(l.all()), fp.pid(), before)

	// The stream and the chaos.
	stop := make(chan struct{})
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sendOne()
				time.Sleep(sendPause)
			}
		}()
	}
	ch := &chaos{t: t, fp: fp, clamd: clamd, spamd: spamd.Proc, rspamd: rspamd.Proc, redis: redis, counts: map[string]int{}}
	ch.run(time.Duration(minutes) * time.Minute)
	close(stop)
	wg.Wait()
	t.Logf("chaos over: %d faults %v; %d messages offered", ch.total, ch.counts, len(l.all()))

	settle(t, pf, snk, l, drainWait)
	c := l.counts()
	t.Logf("drained; waiting %s of quiet before the resource check", quietPeriod)
	time.Sleep(quietPeriod)
	after := sample(t, fp.pid())
	met := fp.scrape(t)
	t.Logf("end: fpsafe pid %d (restarted %d times; %d faults since its last start): %s", fp.pid(), ch.counts["fpsafe-kill"], ch.sinceRestart, after)
	t.Logf("metrics: %s", met)

	line := fmt.Sprintf("soak: minutes=%d offered=%d delivered=%d held=%d rejected=%d missing=%d faults=%d rss_start=%dKiB rss_end=%dKiB fds_start=%d fds_end=%d threads_start=%d threads_end=%d",
		minutes, c.offered, c.delivered, c.held, c.rejected, c.missing, ch.total,
		before.rssKiB, after.rssKiB, before.fds, after.fds, before.threads, after.threads)
	t.Log(line)
	fmt.Println(line)
	fmt.Printf("soak: faults %s\n", ch.summary())

	if !c.balanced() {
		n := 0
		for _, o := range l.all() {
			if o.Out != outDelivered && o.Out != outHeld && n < 20 {
				t.Logf("  %s %s: %s %v", o.Kind, o.Rcpt, o.Out, o.Err)
				n++
			}
		}
		t.Errorf("ledger does not balance: %s", line)
	}
	if c.dup > 0 {
		t.Logf("%d messages delivered more than once (at-least-once after a kill mid-delivery; not a loss)", c.dup)
	}
	if float64(after.rssKiB) > float64(before.rssKiB)*rssFactor+rssSlackKiB {
		t.Errorf("RSS %d KiB after the soak, %d KiB at the start: above x%.1f + %d KiB", after.rssKiB, before.rssKiB, rssFactor, rssSlackKiB)
	}
	if after.threads > before.threads+threadsSlack {
		t.Errorf("threads %d after the soak, %d at the start (slack %d)", after.threads, before.threads, threadsSlack)
	}
	if after.fds > before.fds+fdsSlack {
		t.Errorf("open files %d after the soak, %d at the start (slack %d):\n%s", after.fds, before.fds, fdsSlack, fdList(fp.pid()))
	}
	if !strings.Contains(met, "fpsafe_sessions_in_flight 0") {
		t.Errorf("sessions still in flight after the drain: %s", met)
	}
	if t.Failed() {
		t.Logf("postfix log tail:\n%s", tail(pf.Log(), 6000))
		t.Logf("fpsafe log tail:\n%s", tail(fp.proc.Output(), 6000))
	}
}

// pick returns the n-th message of the stream: half ham, a quarter GTUBE, a quarter EICAR.
func pick(n int) (string, []byte) {
	id := []byte(fmt.Sprintf("X-Test-ID: soak-%06d\r\n", n))
	switch n % 4 {
	case 1:
		return "gtube", append(id, testmsg.Spam()...)
	case 3:
		return "eicar", append(id, testmsg.Virus()...)
	}
	return "ham", append(id, testmsg.Ham()...)
}

// settle waits (at most wait) until every accepted offer is delivered or held.
func settle(t *testing.T, pf *daemontest.Postfix, s *smtptest.Sink, l *ledger, wait time.Duration) {
	t.Helper()
	deadline, lastKick := time.Now().Add(wait), time.Now()
	for {
		q, err := pf.Queue()
		if err != nil {
			t.Logf("postfix queue: %v", err)
		}
		held := map[string]bool{}
		for _, e := range q {
			for _, r := range e.Recipients {
				if e.QueueName == "hold" {
					held[strings.ToLower(r.Address)] = true
				}
			}
		}
		open := 0
		for _, o := range l.all() {
			if o.Out == outRejected {
				continue
			}
			o.Copies = len(s.Copies(o.Rcpt))
			switch {
			case o.Copies > 0:
				o.Out = outDelivered
			case held[strings.ToLower(o.Rcpt)]:
				o.Out = outHeld
			default:
				o.Out = outPending
				open++
			}
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, o := range l.all() {
				if o.Out == outPending {
					o.Out = outMissing
				}
			}
			t.Errorf("%d messages neither delivered nor held after %s", open, wait)
			return
		}
		if time.Since(lastKick) > 10*time.Second {
			pf.Flush()
			lastKick = time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// chaos injects one fault at a time, every 3 to 8 s, and undoes it before the next.
type chaos struct {
	t            *testing.T
	fp           *fpsafe
	clamd        *daemontest.ClamdDaemon
	spamd        *daemontest.Process
	rspamd       *daemontest.Process
	redis        *daemontest.Redis
	counts       map[string]int
	total        int
	sinceRestart int // faults of other components since fpsafe's last restart
}

var faults = []string{"fpsafe-kill", "clamd-restart", "clamd-freeze", "spamd-freeze", "rspamd-freeze", "redis-kill"}

func (c *chaos) run(d time.Duration) {
	t := c.t
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(jitter(3*time.Second, 8*time.Second))
		f := faults[rand.IntN(len(faults))]
		begin := time.Now()
		switch f {
		case "fpsafe-kill":
			c.fp.kill()
			time.Sleep(jitter(0, 3*time.Second))
			c.fp.start()
			c.sinceRestart = -1
		case "clamd-restart":
			c.clamd.Stop()
			time.Sleep(jitter(time.Second, 5*time.Second))
			c.clamd.Proc = daemontest.Start(t, "clamd", exec.Command(daemontest.Require(t, "clamd"), "--config-file="+filepath.Join(c.clamd.Dir, "clamd.conf")))
			daemontest.WaitTCP(t, c.clamd.Proc, strings.TrimPrefix(c.clamd.Addr, "inet:"), 120*time.Second)
		case "clamd-freeze":
			freeze(c.clamd.Proc, jitter(2*time.Second, 10*time.Second))
		case "spamd-freeze":
			freeze(c.spamd, jitter(2*time.Second, 10*time.Second))
		case "rspamd-freeze":
			freeze(c.rspamd, jitter(2*time.Second, 10*time.Second))
		case "redis-kill":
			syscall.Kill(c.redis.Proc.Cmd.Process.Pid, syscall.SIGKILL)
			waitExit(t, c.redis.Proc)
			time.Sleep(jitter(time.Second, 8*time.Second))
			c.redis.Proc = daemontest.Start(t, "redis-server", exec.Command(daemontest.Require(t, "redis-server"), filepath.Join(c.redis.Dir, "redis.conf")))
			daemontest.WaitTCP(t, c.redis.Proc, c.redis.Addr, 30*time.Second)
		}
		c.counts[f]++
		c.total++
		c.sinceRestart++
		t.Logf("chaos: %s (%s)", f, time.Since(begin).Round(time.Millisecond))
	}
}

func (c *chaos) summary() string {
	var b strings.Builder
	for _, f := range faults {
		fmt.Fprintf(&b, "%s=%d ", f, c.counts[f])
	}
	return strings.TrimSpace(b.String())
}

// freeze stops a daemon's whole process group (workers included) for d: a hung engine.
func freeze(p *daemontest.Process, d time.Duration) {
	pg := -p.Cmd.Process.Pid
	syscall.Kill(pg, syscall.SIGSTOP)
	time.Sleep(d)
	syscall.Kill(pg, syscall.SIGCONT)
}

func jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

func waitExit(t *testing.T, p *daemontest.Process) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !p.Exited(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s (pid %d) still running 10 s after SIGKILL", p.Name, p.Cmd.Process.Pid)
		}
	}
}

// level is a process's resource figures from /proc.
type level struct{ rssKiB, threads, fds int }

func (l level) String() string {
	return fmt.Sprintf("rss=%dKiB threads=%d fds=%d", l.rssKiB, l.threads, l.fds)
}

func sample(t *testing.T, pid int) level {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("fpsafe status: %v", err)
	}
	defer f.Close()
	var l level
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			l.rssKiB, _ = strconv.Atoi(fs[0])
		case "Threads":
			l.threads, _ = strconv.Atoi(fs[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fpsafe fds: %v", err)
	}
	l.fds = len(fds)
	return l
}

// fdList names a process's open files, for a failure message.
func fdList(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range es {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// fpsafe is one `fpsafe serve`, restartable on the same milter and metrics ports.
type fpsafe struct {
	t       *testing.T
	bin     string
	cfg     string
	addr    string
	metrics string
	proc    *daemontest.Process
}

func newFpsafe(t *testing.T, bin, clamd, spamd, rspamd, redis string) *fpsafe {
	t.Helper()
	dir := daemontest.StateDir(t)
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	f := &fpsafe{t: t, bin: bin,
		addr:    fmt.Sprintf("127.0.0.1:%d", daemontest.FreePort(t)),
		metrics: fmt.Sprintf("127.0.0.1:%d", daemontest.FreePort(t))}
	f.cfg = daemontest.WriteFile(t, dir, "fpsafe.toml", fmt.Sprintf(`# generated by internal/soak
[milter]
listen = "inet:%s"
decision_timeout = "15s"
spool_dir = %q

[metrics]
listen = %q

[log]
format = "text"
level = "info"

[allowlist]
redis = "redis://%s/0"
refresh = "5s"

[auth]
authserv_id = "mx.soak.test"
resolver = "127.0.0.1:%d"   # nothing listens: lookups fail fast, no allowlist bypass
timeout = "500ms"

[[engine]]
name = "clamd"
type = "clamd"
address = %q
timeout = "12s"

[[engine]]
name = "spamd"
type = "spamd"
address = %q
timeout = "12s"

[[engine]]
name = "rspamd"
type = "rspamd"
address = %q
timeout = "12s"
`, f.addr, spool, f.metrics, redis, daemontest.FreePort(t), clamd, spamd, rspamd))
	return f
}

// seedAllowlist puts one entry (matching no soak message) in Redis, so that fpsafe's
// store has a list to keep and reload across redis-server's deaths.
func (f *fpsafe) seedAllowlist() {
	out, err := exec.Command(f.bin, "allowlist", "add", "-config", f.cfg, "--id", "soak-partner",
		"--match", "domain:partner.soak.test", "--require", "dkim", "--reason", "soak seed", "--owner", "qa").CombinedOutput()
	if err != nil {
		f.t.Fatalf("fpsafe allowlist add: %v\n%s", err, out)
	}
}

func (f *fpsafe) start() {
	f.t.Helper()
	f.proc = daemontest.Start(f.t, "fpsafe", exec.Command(f.bin, "serve", "-config", f.cfg))
	daemontest.WaitTCP(f.t, f.proc, f.addr, 30*time.Second)
	daemontest.WaitTCP(f.t, f.proc, f.metrics, 30*time.Second)
}

func (f *fpsafe) pid() int { return f.proc.Cmd.Process.Pid }

func (f *fpsafe) kill() {
	f.t.Helper()
	syscall.Kill(f.pid(), syscall.SIGKILL)
	waitExit(f.t, f.proc)
}

// scrape returns the gauges of fpsafe's /metrics that the soak reports.
func (f *fpsafe) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + f.metrics + "/metrics")
	if err != nil {
		t.Errorf("metrics: %v", err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "fpsafe_sessions_in_flight") || strings.HasPrefix(line, "fpsafe_spool_bytes") ||
			strings.HasPrefix(line, "fpsafe_allowlist_snapshot_age_seconds") || strings.HasPrefix(line, "fpsafe_engine_breaker_open") ||
			strings.HasPrefix(line, "fpsafe_messages_total") || strings.HasPrefix(line, "fpsafe_unscanned_total") ||
			strings.HasPrefix(line, "go_goroutines") || strings.HasPrefix(line, "process_open_fds") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "; ")
}

// buildFpsafe compiles ./cmd/fpsafe (the module root is two levels up) into a temp dir.
func buildFpsafe(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fpsafe")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fpsafe")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fpsafe: %v\n%s", err, out)
	}
	return bin
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
