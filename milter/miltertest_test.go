package milter_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/milter"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// TestMiltertest drives fpsafe's milter server with opendkim's miltertest, a milter client
// independent of go-milter's: a second opinion on the wire format (header values with
// their leading space, deletions as empty change-header requests, quarantine, the final
// reply). Each script in testdata/miltertest fails by itself (non-zero exit) when fpsafe
// misbehaves; the test then checks what fpsafe's decider was given.
func TestMiltertest(t *testing.T) {
	bin := daemontest.Require(t, "miltertest")
	clean := scoring.Verdict{Outcome: scoring.Clean}
	virus := scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}}
	for _, c := range []struct {
		name, script  string
		verdict       scoring.Verdict
		requestMacros bool
		check         func(t *testing.T, got []seen)
	}{
		{"clean", "clean.lua", clean, true, func(t *testing.T, got []seen) {
			want := []mail.Field{{Name: "From", Value: " Alice <alice@example.org>"}, {Name: "To", Value: " bob@example.net"}, {Name: "Subject", Value: " Hello"}}
			if len(got) != 1 || !slices.Equal(got[0].header, want) || got[0].body != "Hi Bob.\r\n" {
				t.Fatalf("decided %+v, want one message with header %v", got, want)
			}
			env := got[0].env
			if got[0].queueID != "QCLEAN1" || env.MailFrom != "alice@example.org" || strings.Join(env.Rcpts, ",") != "bob@example.net,carol@example.net" ||
				env.ClientIP.String() != "192.0.2.7" || env.ClientName != "mx.sender.example" || env.Helo != "mx.sender.example" || env.AuthUser != "alice" {
				t.Fatalf("envelope %+v, queue id %q", env, got[0].queueID)
			}
		}},
		// the same without SMFIF_SETSYMLIST, as fpsafe runs with request_macros = false
		{"clean-no-symlist", "clean.lua", clean, false, func(t *testing.T, got []seen) {
			if len(got) != 1 || got[0].queueID != "QCLEAN1" {
				t.Fatalf("decided %+v", got)
			}
		}},
		{"forged", "forged.lua", clean, true, func(t *testing.T, got []seen) {
			if len(got) != 1 || len(got[0].header) != 7 || got[0].header[0] != (mail.Field{Name: "X-FPSafe-Verdict", Value: " clean; score=0.0"}) {
				t.Fatalf("decided %+v", got)
			}
		}},
		{"quarantine", "quarantine.lua", virus, true, func(t *testing.T, got []seen) {
			if len(got) != 1 || got[0].queueID != "QVIRUS" {
				t.Fatalf("decided %+v", got)
			}
		}},
		{"twomessages", "twomessages.lua", clean, true, func(t *testing.T, got []seen) {
			if len(got) != 2 || got[0].queueID != "Q1" || got[1].queueID != "Q3" {
				t.Fatalf("decided %+v, want Q1 and Q3", got)
			}
			third := got[1]
			want := []mail.Field{{Name: "X-Spam-Flag", Value: " NO"}, {Name: "From", Value: " c@example.org"}, {Name: "To", Value: " z@example.net"}, {Name: "Subject", Value: " third"}}
			if !slices.Equal(third.header, want) || third.body != "three\r\n" {
				t.Fatalf("Q3 header %v body %q: fields of Q1 or the aborted Q2 leaked", third.header, third.body)
			}
			if third.env.MailFrom != "c@example.org" || strings.Join(third.env.Rcpts, ",") != "z@example.net" ||
				third.env.ClientIP.String() != "192.0.2.7" || third.env.Helo != "mx.sender.example" {
				t.Fatalf("Q3 envelope %+v", third.env)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := milter.DefaultConfig()
			cfg.RequestMacros = c.requestMacros
			h := start(t, cfg, pipeline(c.verdict))
			runMiltertest(t, bin, c.script, h.addr, c.requestMacros)
			c.check(t, h.rec.seen())
			waitInFlight(t, h.srv, 0)
		})
	}
}

// runMiltertest runs testdata/miltertest/script against the milter at addr (host:port)
// and fails the test unless it exits with status 0. On failure it runs the script once
// more with -vv and prints both outputs.
func runMiltertest(t *testing.T, bin, script, addr string, symlist bool) {
	t.Helper()
	out, err := miltertest(t, bin, script, addr, symlist)
	if err != nil {
		verbose, _ := miltertest(t, bin, script, addr, symlist, "-v", "-v")
		t.Fatalf("miltertest -s %s: %v\n%s\n--- again with -vv:\n%s", script, err, out, verbose)
	}
	t.Logf("miltertest -s %s:\n%s", script, out)
}

// miltertest runs one script with a 60 s limit and returns its combined output.
func miltertest(t *testing.T, bin, script, addr string, symlist bool, flags ...string) (string, error) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "miltertest"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("address %q", addr)
	}
	sym := "0"
	if symlist {
		sym = "1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(flags, "-s", filepath.Join(dir, script))...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"FPSAFE_MILTER=inet:"+port+"@"+host, // miltertest's syntax: inet:PORT@HOST
		"FPSAFE_LUADIR="+dir,
		"FPSAFE_SYMLIST="+sym,
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return string(out), err
}

// TestMiltertestScriptsCatchMisbehaviour is the scripts' negative control: against a milter
// that does the wrong thing, each must exit non-zero and say what went wrong.
func TestMiltertestScriptsCatchMisbehaviour(t *testing.T) {
	bin := daemontest.Require(t, "miltertest")
	clean := scoring.Verdict{Outcome: scoring.Clean}
	virus := scoring.Verdict{Outcome: scoring.Virus, Details: []string{"Win.Test.EICAR_HDB-1"}}
	noStrip := pipeline(clean)
	noStrip.Config.StripHeaders = nil // only X-FPSafe-* is still removed
	for _, c := range []struct {
		name, script, want string
		addr               func(t *testing.T) string
	}{
		{"clean-but-virus", "clean.lua", "X-FPSafe-Verdict", fpsafeAt(pipeline(virus))},
		{"virus-but-clean", "quarantine.lua", "quarantine not requested", fpsafeAt(pipeline(clean))},
		{"forged-kept", "forged.lua", "forged X-Spam-Flag #1 not removed", fpsafeAt(noStrip)},
		{"accept", "clean.lua", "answered SMFIR_ACCEPT", answering(gomilter.RespAccept)},
		{"reject", "quarantine.lua", "answered SMFIR_REJECT", answering(gomilter.RespReject)},
		{"tempfail", "clean.lua", "answered SMFIR_TEMPFAIL", answering(gomilter.RespTempFail)},
		{"discard", "twomessages.lua", "answered SMFIR_DISCARD", answering(gomilter.RespDiscard)},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := miltertest(t, bin, c.script, c.addr(t), true)
			if err == nil || !strings.Contains(out, "FAIL: ") || !strings.Contains(out, c.want) {
				t.Fatalf("miltertest -s %s: %v, want a failure saying %q:\n%s", c.script, err, c.want, out)
			}
			t.Logf("%s failed as it should:\n%s", c.script, out)
		})
	}
}

func fpsafeAt(p *policy.Pipeline) func(t *testing.T) string {
	return func(t *testing.T) string { return start(t, milter.DefaultConfig(), p).addr }
}

// answering starts a go-milter server that negotiates like fpsafe but answers resp at
// end-of-message, without any modification.
func answering(resp gomilter.Response) func(t *testing.T) string {
	return func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &gomilter.Server{
			NewMilter: func() gomilter.Milter { return endWith{resp: resp} },
			Actions:   milter.Actions | gomilter.OptSetSymList,
			Protocol:  milter.Protocol,
			SymList:   map[gomilter.Stage][]string{gomilter.StageEOM: {"i"}},
		}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		t.Cleanup(func() { ln.Close(); <-done })
		return ln.Addr().String()
	}
}

type endWith struct {
	gomilter.NoOpMilter
	resp gomilter.Response
}

func (e endWith) Body(*gomilter.Modifier) (gomilter.Response, error) { return e.resp, nil }
