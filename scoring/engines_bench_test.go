package scoring_test

import (
	"context"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/clamd"
	"github.com/fpsafe/fpsafe/scoring/rspamd"
	"github.com/fpsafe/fpsafe/scoring/spamd"
)

// realEngines starts clamd, spamd and rspamd and returns their configured clients.
func realEngines(b *testing.B) []scoring.Configured {
	cd, sd, rd := daemontest.Clamd(b), daemontest.StartSpamd(b), daemontest.StartRspamd(b)
	var out []scoring.Configured
	for _, c := range []scoring.EngineConfig{
		{Name: "clamd", Type: "clamd", Address: cd.Addr},
		{Name: "spamd", Type: "spamd", Address: sd.Addr, MaxSize: 10 << 20, Timeout: 20 * time.Second},
		{Name: "rspamd", Type: "rspamd", Address: rd.Addr},
	} {
		c = c.WithDefaults()
		var e scoring.Engine
		var err error
		switch c.Type {
		case "clamd":
			e, err = clamd.New(c)
		case "spamd":
			e, err = spamd.New(c)
		case "rspamd":
			e, err = rspamd.New(c)
		}
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, scoring.Configured{Engine: e, Config: c})
	}
	return out
}

// BenchmarkRealEngines measures, in one run against the real daemons: each engine's scan
// latency for a small ham and a 5 MB attachment (ms/op), and one message through all three
// engines sequentially and through the Aggregator in parallel, with the ratio
// parallel ÷ sequential measured on the same messages, alternating, so that machine noise
// affects both sides alike.
//
//	go test -run '^$' -bench RealEngines -benchtime 20x ./scoring/
func BenchmarkRealEngines(b *testing.B) {
	for _, n := range []string{"clamd", "spamd", "rspamd"} {
		daemontest.Require(b, n)
	}
	engines := realEngines(b)
	ham := testmsg.Parse(testmsg.Ham(), mail.Envelope{MailFrom: "a@example.org", Rcpts: []string{"b@example.net"}})
	big := testmsg.Parse(testmsg.Big(5<<20), mail.Envelope{MailFrom: "a@example.org", Rcpts: []string{"b@example.net"}})
	for _, e := range engines {
		for _, m := range []struct {
			name string
			msg  *mail.Message
		}{{"ham", ham}, {"5MB", big}} {
			b.Run(e.Config.Name+"/"+m.name, func(b *testing.B) {
				for b.Loop() {
					scan(b, e.Engine, m.msg)
				}
			})
		}
	}
	agg := scoring.NewAggregator(engines, scoring.DefaultConfig(), nil)
	for _, m := range []struct {
		name string
		msg  *mail.Message
	}{{"ham", ham}, {"5MB", big}} {
		b.Run("all-three/"+m.name, func(b *testing.B) {
			var seq, par time.Duration
			for b.Loop() {
				t0 := time.Now()
				for _, e := range engines {
					scan(b, e.Engine, m.msg)
				}
				t1 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				for _, v := range agg.Scan(ctx, m.msg) {
					if !v.Outcome.Answered() {
						b.Fatalf("%s: %s %s", v.Engine, v.Outcome, v.Reason)
					}
				}
				cancel()
				seq += t1.Sub(t0)
				par += time.Since(t1)
			}
			b.ReportMetric(float64(seq.Microseconds())/float64(b.N)/1000, "seq-ms")
			b.ReportMetric(float64(par.Microseconds())/float64(b.N)/1000, "par-ms")
			b.ReportMetric(float64(par)/float64(seq), "par/seq")
		})
	}
}

func scan(b *testing.B, e scoring.Engine, m *mail.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Scan(ctx, m); err != nil {
		b.Fatalf("%s: %v", e.Name(), err)
	}
}
