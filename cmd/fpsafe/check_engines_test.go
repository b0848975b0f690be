package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// `fpsafe check` with clamd, spamd, an ICAP server (c-icap in front of the same clamd) and a
// command engine (clamdscan) configured shows all four verdicts, and EICAR is quarantined.
func TestCheckFourEngineTypes(t *testing.T) {
	for _, b := range []string{"clamd", "spamd", "c-icap", "clamdscan"} {
		daemontest.Require(t, b)
	}
	clam := daemontest.Clamd(t)
	sa := daemontest.StartSpamd(t)
	icap := daemontest.StartCICAP(t, clam)
	dir := t.TempDir()
	_, port, _ := strings.Cut(strings.TrimPrefix(clam.Addr, "inet:127.0.0.1"), ":")
	scanConf := daemontest.WriteFile(t, dir, "clamd.conf", "TCPSocket "+port+"\nTCPAddr 127.0.0.1\n")
	conf := daemontest.WriteFile(t, dir, "fpsafe.toml", fmt.Sprintf(`[milter]
decision_timeout = "20s"

[[engine]]
name = "clamav"
type = "clamd"
address = %q

[[engine]]
name = "spamassassin"
type = "spamd"
address = %q
timeout = "15s"

[[engine]]
name = "c-icap"
type = "icap"
address = %q
timeout = "15s"

[[engine]]
name = "clamdscan"
type = "command"
command = [%q, "--config-file=%s", "--no-summary", "-"]
timeout = "15s"
`, clam.Addr, sa.Addr, icap.URL, daemontest.Require(t, "clamdscan"), scanConf))
	eicar := filepath.Join(dir, "eicar.eml")
	os.WriteFile(eicar, testmsg.Virus(), 0o644)

	rc, out, errs := runCmd(t, "", "check", "-config", conf, "--from", "a@example.org", "--rcpt", "b@example.net", eicar)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errs)
	}
	var d struct {
		Action   string `json:"action"`
		Verdicts []struct {
			Engine, Outcome string
			Details         []string
		} `json:"verdicts"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, v := range d.Verdicts {
		got[v.Engine] = v.Outcome
	}
	want := map[string]string{"clamav": "virus", "c-icap": "virus", "clamdscan": "virus", "spamassassin": "clean"}
	for e, o := range want {
		if got[e] != o {
			t.Errorf("%s: %q, want %q (all: %v)", e, got[e], o, got)
		}
	}
	if d.Action != "quarantine" || len(d.Verdicts) != 4 {
		t.Fatalf("decision:\n%s", out)
	}
	rc, text, _ := runCmd(t, "", "check", "--format", "text", "-config", conf, "../../testdata/messages/ham.eml")
	for _, e := range []string{"clamav", "spamassassin", "c-icap", "clamdscan"} {
		if rc != 0 || !strings.Contains(text, "\n  "+e+"=clean ") {
			t.Fatalf("ham through four engines: %s not clean:\n%s", e, text)
		}
	}
}
