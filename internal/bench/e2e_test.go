//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
)

// benchConfig is one configuration of the end-to-end benchmark.
type benchConfig struct {
	name  string
	ref   string // the config its ratio divides by ("" = none)
	heavy bool   // spamd-bound: BENCH_MESSAGES/4 messages
	smtp  string // Postfix smtpd, "127.0.0.1:PORT"; "" for spamd driven directly
	spamd string // spamd "HOST:PORT" for the direct run
	fp    *fpsafeProc
}

// runResult is one repetition of one config.
type runResult struct {
	n         int
	wall      float64 // s, until every message reached the sink
	srcWall   float64 // s, smtp-source alone
	rate      float64 // msg/s
	cpuMs     float64 // whole-machine busy CPU ms per message
	fpCPUMs   float64 // the fpsafe process's own CPU ms per message
	p50, p99  time.Duration
	delivered int64
	errs      int
	note      string
	outcomes  map[string]map[string]float64 // fpsafe engine outcomes during the run
}

// TestEndToEnd is `make bench`: Postfix + smtp-source (20 sessions, one message per
// session) against each configuration, the repetitions interleaved, then medians and
// same-repetition ratios. `-tags bench` builds it; BENCH_MESSAGES (2000) per rep,
// BENCH_REPS (3), BENCH_LATENCY (200) messages for the latency client.
func TestEndToEnd(t *testing.T) {
	daemontest.Require(t, "smtp-source")
	n := EnvInt("BENCH_MESSAGES", 2000)
	reps := EnvInt("BENCH_REPS", 3)
	latN := EnvInt("BENCH_LATENCY", 200)
	hamLF := filepath.Join(t.TempDir(), "ham-lf.eml")
	if err := os.WriteFile(hamLF, LF(Ham()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(hamLF), 0o755)

	setup := time.Now()
	sink, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	fake, err := StartFakeClamd()
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	clamd := daemontest.Clamd(t)
	spamd := daemontest.StartSpamd(t)
	rsp := daemontest.StartRspamdProxy(t)
	clamavMilter := daemontest.StartClamavMilter(t, clamd)
	spamassMilter := daemontest.StartSpamassMilter(t, spamd)

	// Under a saturating load spamd (2 children, ~0.2 CPU-s a message) queues scans for
	// seconds: its timeout and the decision deadline are raised so that fpsafe waits for
	// spamd like spamass-milter does, instead of failing open (see docs/BENCHMARKS.md).
	spamdConf := engineConf{name: "spamd", typ: "spamd", addr: spamd.Addr,
		extra: []string{`timeout = "50s"`, `max_concurrency = 20`}}
	clamdConf := engineConf{name: "clamd", typ: "clamd", addr: clamd.Addr}
	rspamdConf := engineConf{name: "rspamd", typ: "rspamd", addr: rsp.Addr}
	fpNone := startFpsafe(t, "8s")
	fpInstant := startFpsafe(t, "8s", engineConf{name: "fake", typ: "clamd", addr: fake.Addr})
	fpClamd := startFpsafe(t, "8s", clamdConf)
	fpRspamd := startFpsafe(t, "8s", rspamdConf)
	fpAll := startFpsafe(t, "55s", clamdConf, spamdConf, rspamdConf)

	postfix := func(milter string) string {
		p := daemontest.StartPostfix(t, daemontest.PostfixOptions{Milter: milter, RelayHost: sink.Addr,
			MainCF: []string{"milter_content_timeout = 120s"}})
		return p.Addr
	}
	cfgs := []*benchConfig{
		{name: "none", smtp: postfix("")},
		{name: "fpsafe-no-engines", ref: "none", smtp: postfix(fpNone.MilterAddr()), fp: fpNone},
		{name: "fpsafe-instant", ref: "none", smtp: postfix(fpInstant.MilterAddr()), fp: fpInstant},
		{name: "clamav-milter", ref: "none", smtp: postfix(clamavMilter.Addr)},
		{name: "fpsafe-clamd", ref: "clamav-milter", smtp: postfix(fpClamd.MilterAddr()), fp: fpClamd},
		{name: "rspamd-proxy", ref: "none", smtp: postfix(rsp.MilterAddr)},
		{name: "fpsafe-rspamd", ref: "rspamd-proxy", smtp: postfix(fpRspamd.MilterAddr()), fp: fpRspamd},
		{name: "chain", ref: "none", heavy: true, smtp: postfix(clamavMilter.Addr + ", " + spamassMilter.Addr + ", " + rsp.MilterAddr)},
		{name: "fpsafe-all", ref: "chain", heavy: true, smtp: postfix(fpAll.MilterAddr()), fp: fpAll},
		{name: "spamd-direct", heavy: true, spamd: strings.TrimPrefix(spamd.Addr, "inet:")},
	}
	if only := os.Getenv("BENCH_CONFIGS"); only != "" { // e.g. "none,fpsafe-no-engines"
		keep := map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			keep[strings.TrimSpace(s)] = true
		}
		var sel []*benchConfig
		for _, c := range cfgs {
			if keep[c.name] {
				sel = append(sel, c)
			}
		}
		cfgs = sel
	}
	t.Logf("setup (daemons, %d Postfix, 5 fpsafe) in %s", len(cfgs), time.Since(setup).Round(time.Millisecond))

	results := map[string][]runResult{}
	for rep := 1; rep <= reps; rep++ {
		for _, c := range cfgs {
			m := n
			lat := latN
			if c.heavy {
				m, lat = max(n/4, 1), max(latN/4, 1)
			}
			r := runOne(t, c, sink, hamLF, m, lat)
			results[c.name] = append(results[c.name], r)
			line := fmt.Sprintf("BENCH rep %d %-18s %5d msgs %7.2f s %7.1f msg/s (smtp-source %.2f s) %6.1f CPU ms/msg (fpsafe %.2f) p50 %s p99 %s delivered %d errors %d %s",
				rep, c.name, r.n, r.wall, r.rate, r.srcWall, r.cpuMs, r.fpCPUMs, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.delivered, r.errs, r.note)
			t.Log(line)
			fmt.Println(line)
		}
	}
	table := summarize(cfgs, results)
	fmt.Println(table)
	t.Log("\n" + table)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(table), 0o644)
	}
}

// runOne runs smtp-source (or the spamd client) and then the latency client against c.
func runOne(t *testing.T, c *benchConfig, sink *Sink, hamLF string, n, latN int) runResult {
	r := runResult{n: n}
	var before map[string]map[string]float64
	if c.fp != nil {
		before, _ = EngineOutcomes(c.fp.Metrics)
	}
	if c.spamd != "" {
		cpu0 := ReadCPU()
		res := SpamdLoad(c.spamd, Ham(), n, 20, 120*time.Second)
		r.wall = res.Wall.Seconds()
		r.srcWall = r.wall
		r.rate = float64(len(res.Latencies)) / r.wall
		r.cpuMs = 1000 * BusySeconds(cpu0, ReadCPU()) / float64(n)
		r.p50, r.p99 = Percentile(res.Latencies, 50), Percentile(res.Latencies, 99)
		r.delivered, r.errs = int64(len(res.Latencies)), res.Errors
		if res.FirstErr != nil {
			r.note = "first error: " + res.FirstErr.Error()
		}
		return r
	}
	base := sink.Count()
	var fp0 float64
	if c.fp != nil {
		fp0 = ProcCPU(c.fp.Pid())
	}
	cpu0 := ReadCPU()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Second)
	out, err := exec.CommandContext(ctx, "timeout", "900", "smtp-source", "-s", "20", "-m", fmt.Sprint(n),
		"-F", hamLF, c.smtp).CombinedOutput()
	cancel()
	r.srcWall = time.Since(start).Seconds()
	if err != nil {
		r.note = fmt.Sprintf("smtp-source: %v %.200s", err, out)
	}
	if !sink.WaitFor(base+int64(n), 300*time.Second) {
		r.note += fmt.Sprintf(" queue not drained in 300 s (%d of %d)", sink.Count()-base, n)
	}
	r.wall = time.Since(start).Seconds()
	r.cpuMs = 1000 * BusySeconds(cpu0, ReadCPU()) / float64(n)
	if c.fp != nil {
		r.fpCPUMs = 1000 * (ProcCPU(c.fp.Pid()) - fp0) / float64(n)
	}
	r.delivered = sink.Count() - base
	r.rate = float64(r.delivered) / r.wall
	if c.fp != nil {
		after, _ := EngineOutcomes(c.fp.Metrics)
		r.outcomes = diffOutcomes(before, after)
		r.note += " " + formatOutcomes(r.outcomes)
	}

	// Latency: our own client, one message per session, 20 sessions, after smtp-source.
	base = sink.Count()
	res := SendSMTP(c.smtp, Ham(), latN, 20, 120*time.Second)
	r.p50, r.p99 = Percentile(res.Latencies, 50), Percentile(res.Latencies, 99)
	r.errs = res.Errors
	if res.FirstErr != nil {
		r.note += " latency client: " + res.FirstErr.Error()
	}
	sink.WaitFor(base+int64(len(res.Latencies)), 300*time.Second)
	return r
}

func diffOutcomes(a, b map[string]map[string]float64) map[string]map[string]float64 {
	d := map[string]map[string]float64{}
	for e, m := range b {
		for o, v := range m {
			if x := v - a[e][o]; x > 0 {
				if d[e] == nil {
					d[e] = map[string]float64{}
				}
				d[e][o] = x
			}
		}
	}
	return d
}

// formatOutcomes gives "clamd: clean=2000; spamd: clean=480 timeout=20".
func formatOutcomes(o map[string]map[string]float64) string {
	var es []string
	for e := range o {
		es = append(es, e)
	}
	sort.Strings(es)
	var parts []string
	for _, e := range es {
		var os []string
		for k, v := range o[e] {
			os = append(os, fmt.Sprintf("%s=%.0f", k, v))
		}
		sort.Strings(os)
		parts = append(parts, e+": "+strings.Join(os, " "))
	}
	return strings.Join(parts, "; ")
}

// summarize prints the medians and the within-rep ratios as a markdown table.
func summarize(cfgs []*benchConfig, res map[string][]runResult) string {
	var b strings.Builder
	b.WriteString("| config | msgs/rep | msg/s (median) | msg/s per rep | CPU ms/msg | fpsafe CPU ms/msg | p50 ms | p99 ms | ratio msg/s vs ref (per rep) | ratio CPU/msg vs ref | ratio p50 vs ref | vs spamd-direct msg/s | engines (rep 1) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range cfgs {
		rs := res[c.name]
		if len(rs) == 0 {
			continue
		}
		var rate, cpu, fpcpu, p50, p99, per []float64
		for _, r := range rs {
			rate = append(rate, r.rate)
			cpu = append(cpu, r.cpuMs)
			fpcpu = append(fpcpu, r.fpCPUMs)
			p50 = append(p50, ms(r.p50))
			p99 = append(p99, ms(r.p99))
			per = append(per, r.rate)
		}
		ratio := func(ref string, f func(runResult) float64) string {
			refs := res[ref]
			if ref == "" || len(refs) == 0 {
				return "-"
			}
			var xs []float64
			var ps []string
			for i := range rs {
				if i < len(refs) && f(refs[i]) > 0 {
					x := f(rs[i]) / f(refs[i])
					xs = append(xs, x)
					ps = append(ps, fmt.Sprintf("%.3f", x))
				}
			}
			return fmt.Sprintf("**%.3f** (%s)", Median(xs), strings.Join(ps, ", "))
		}
		spamdRatio := "-"
		if c.name == "fpsafe-all" || c.name == "chain" {
			spamdRatio = ratio("spamd-direct", func(r runResult) float64 { return r.rate })
		}
		eng := "-"
		if rs[0].outcomes != nil {
			eng = formatOutcomes(rs[0].outcomes)
		}
		fpc := "-"
		if c.fp != nil {
			fpc = fmt.Sprintf("%.2f", Median(fpcpu))
		}
		fmt.Fprintf(&b, "| %s | %d | **%.1f** | %s | %.1f | %s | %.1f | %.1f | %s | %s | %s | %s | %s |\n",
			c.name, rs[0].n, Median(rate), joinF(per), Median(cpu), fpc, Median(p50), Median(p99),
			ratio(c.ref, func(r runResult) float64 { return r.rate }),
			ratio(c.ref, func(r runResult) float64 { return r.cpuMs }),
			ratio(c.ref, func(r runResult) float64 { return ms(r.p50) }),
			spamdRatio, eng)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func joinF(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.1f", x))
	}
	return strings.Join(s, ", ")
}
