package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/clamd"
	"github.com/fpsafe/fpsafe/scoring/rspamd"
	"github.com/fpsafe/fpsafe/scoring/spamd"
)

// daemons are the three real engines, started once for the test.
type daemons struct {
	clamd  *daemontest.ClamdDaemon
	spamd  *daemontest.Spamd
	rspamd *daemontest.Rspamd
}

func startDaemons(t *testing.T) daemons {
	daemontest.Require(t, "clamd")
	daemontest.Require(t, "spamd")
	daemontest.Require(t, "rspamd")
	return daemons{daemontest.Clamd(t), daemontest.StartSpamd(t), daemontest.StartRspamd(t)}
}

// pipe builds a pipeline over the named engines ("clamd", "spamd", "rspamd").
func (d daemons) pipe(t *testing.T, names ...string) *policy.Pipeline {
	t.Helper()
	var engines []scoring.Configured
	for _, n := range names {
		var e scoring.Engine
		var err error
		c := scoring.EngineConfig{Name: n, Type: n}
		switch n {
		case "clamd":
			c.Address = d.clamd.Addr
			c = c.WithDefaults()
			e, err = clamd.New(c)
		case "spamd":
			c.Address = d.spamd.Addr
			c.MaxSize = 10 << 20
			c = c.WithDefaults()
			e, err = spamd.New(c)
		case "rspamd":
			c.Address = d.rspamd.Addr
			c = c.WithDefaults()
			e, err = rspamd.New(c)
		}
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, scoring.Configured{Engine: e, Config: c})
	}
	return &policy.Pipeline{Engines: scoring.NewAggregator(engines, scoring.DefaultConfig(), nil), Config: policy.DefaultConfig()}
}

func decide(p *policy.Pipeline, raw []byte) policy.Decision {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	return p.Run(ctx, testmsg.Parse(raw, mail.Envelope{MailFrom: "a@example.org", Rcpts: []string{"b@example.net"}}))
}

// The real engines, end to end through the pipeline and the policy: EICAR is quarantined,
// GTUBE is tagged by one engine and quarantined by two that agree, ham is delivered, a
// PUA-family hit only tags, and an engine stopped mid-run leaves the others to decide.
func TestRealEngines(t *testing.T) {
	d := startDaemons(t)
	all := d.pipe(t, "clamd", "spamd", "rspamd")
	cases := []struct {
		name    string
		p       *policy.Pipeline
		msg     []byte
		action  policy.Action
		verdict policy.Verdict
		reason  string
	}{
		{"ham", all, testmsg.Ham(), policy.Deliver, policy.VerdictClean, ""},
		{"eicar", all, testmsg.Virus(), policy.Quarantine, policy.VerdictQuarantined, "virus clamd: Lab.EICAR"},
		{"gtube two engines agree", all, testmsg.Spam(), policy.Quarantine, policy.VerdictQuarantined, "2 engines agreeing"},
		{"gtube one engine", d.pipe(t, "clamd", "spamd"), testmsg.Spam(), policy.Tag, policy.VerdictTagged, "only 1 of quarantine_min_engines 2"},
		{"pua family only tags", all, testmsg.Attachment("Tool", "tool.txt", []byte(daemontest.PUATestString)), policy.Tag, policy.VerdictTagged, "suspicious clamd: PUA.Lab.TestString"},
		{"5 MB attachment", all, testmsg.Big(5 << 20), policy.Deliver, policy.VerdictClean, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dec := decide(c.p, c.msg)
			if dec.Action != c.action || dec.Verdict != c.verdict {
				t.Fatalf("got %s/%s, want %s/%s\n%s", dec.Action, dec.Verdict, c.action, c.verdict, policy.Report(dec))
			}
			if c.reason != "" && !strings.Contains(policy.Report(dec), c.reason) {
				t.Fatalf("report lacks %q:\n%s", c.reason, policy.Report(dec))
			}
			for _, v := range dec.Verdicts {
				if !v.Outcome.Answered() {
					t.Errorf("%s did not answer: %s %s", v.Engine, v.Outcome, v.Reason)
				}
			}
		})
	}

	t.Run("rspamd stopped mid-run", func(t *testing.T) {
		d.rspamd.Stop()
		dec := decide(all, testmsg.Spam())
		if dec.Action != policy.Tag || !strings.Contains(policy.Report(dec), "not scanned by rspamd(error") {
			t.Fatalf("got %s/%s:\n%s", dec.Action, dec.Verdict, policy.Report(dec))
		}
		if dec := decide(all, testmsg.Virus()); dec.Action != policy.Quarantine {
			t.Fatalf("EICAR with rspamd down: %s\n%s", dec.Action, policy.Report(dec))
		}
	})
	t.Run("every engine stopped", func(t *testing.T) {
		d.clamd.Stop()
		d.spamd.Stop()
		dec := decide(all, testmsg.Virus())
		if dec.Action != policy.Deliver || dec.Verdict != policy.VerdictUnscanned {
			t.Fatalf("got %s/%s:\n%s", dec.Action, dec.Verdict, policy.Report(dec))
		}
		for _, f := range dec.Add {
			if f.Name == "X-Spam-Flag" {
				t.Fatal("unscanned message flagged as spam")
			}
		}
	})
}
