package icap

import (
	"context"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/clamd"
)

// BenchmarkICAPvsClamd measures, in one run and against the same clamd, the scan latency
// of a small ham and of a message with a 5 MiB attachment through c-icap (virus_scan +
// clamd_mod: c-icap spools the body to a file and has clamd SCAN it) and straight to clamd
// (INSTREAM): ns/op per engine and size, then, per size, both engines alternating on each
// iteration (icap-ms, clamd-ms, icap/clamd) so that machine noise affects both alike.
//
//	go test -run '^$' -bench ICAPvsClamd -benchtime 50x ./scoring/icap/
func BenchmarkICAPvsClamd(b *testing.B) {
	cd := daemontest.Clamd(b)
	ci := daemontest.StartCICAP(b, cd)
	ic := newClient(b, scoring.EngineConfig{Name: "icap", Address: ci.URL})
	cc, err := clamd.New(scoring.EngineConfig{Name: "clamd", Type: "clamd", Address: cd.Addr}.WithDefaults())
	if err != nil {
		b.Fatal(err)
	}
	engines := []scoring.Engine{ic, cc}
	for _, m := range []struct {
		name string
		msg  *mail.Message
	}{{"ham", msg(testmsg.Ham())}, {"5MB", msg(testmsg.Big(5 << 20))}} {
		for _, e := range engines {
			b.Run(m.name+"/"+e.Name(), func(b *testing.B) {
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					v, err := e.Scan(ctx, m.msg)
					cancel()
					if err != nil || v.Outcome != scoring.Clean {
						b.Fatalf("%s: %+v, %v", e.Name(), v, err)
					}
				}
			})
		}
		b.Run(m.name+"/alternating", func(b *testing.B) {
			var took [2]time.Duration
			for b.Loop() {
				for i, e := range engines {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					t0 := time.Now()
					v, err := e.Scan(ctx, m.msg)
					took[i] += time.Since(t0)
					cancel()
					if err != nil || v.Outcome != scoring.Clean {
						b.Fatalf("%s: %+v, %v", e.Name(), v, err)
					}
				}
			}
			b.ReportMetric(float64(took[0].Microseconds())/float64(b.N)/1000, "icap-ms")
			b.ReportMetric(float64(took[1].Microseconds())/float64(b.N)/1000, "clamd-ms")
			b.ReportMetric(float64(took[0])/float64(took[1]), "icap/clamd")
		})
	}
}
