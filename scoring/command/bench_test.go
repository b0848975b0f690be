package command

import (
	"context"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
)

// BenchmarkClamdscan measures a command engine running clamdscan per message (process
// start, INSTREAM to the test clamd, exit) for a small ham and a 5 MiB attachment, on
// stdin and with {file}.
//
//	go test -run '^$' -bench Clamdscan -benchtime 20x ./scoring/command/
func BenchmarkClamdscan(b *testing.B) {
	bin := daemontest.Require(b, "clamdscan")
	d := daemontest.Clamd(b)
	conf := clamdscanConfig(b, d)
	for _, mode := range []struct {
		name string
		argv []string
	}{
		{"stdin", []string{bin, "--config-file=" + conf, "--no-summary", "-"}},
		{"file", []string{bin, "--config-file=" + conf, "--no-summary", "--stream", Placeholder}},
	} {
		c := newClient(b, scoring.EngineConfig{Command: mode.argv})
		for _, m := range []struct {
			name string
			raw  []byte
		}{{"ham", testmsg.Ham()}, {"5MB", testmsg.Big(5 << 20)}} {
			msg := msg(m.raw)
			b.Run(m.name+"/"+mode.name, func(b *testing.B) {
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					v, err := c.Scan(ctx, msg)
					cancel()
					if err != nil || v.Outcome != scoring.Clean {
						b.Fatalf("%+v, %v", v, err)
					}
				}
			})
		}
	}
}
