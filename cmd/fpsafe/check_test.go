package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(args, strings.NewReader(stdin), &out, &errb)
	return rc, out.String(), errb.String()
}

func TestCheckJSON(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--from", "alice@example.org", "--rcpt", "bob@example.net", "--rcpt", "carol@example.net", "--ip", "192.0.2.1", "--helo", "mx.example.org", "../../testdata/messages/forged-verdict.eml"},
		{"check", "../../testdata/messages/forged-verdict.eml", "-from", "alice@example.org", "-rcpt=bob@example.net", "--rcpt", "carol@example.net", "-ip", "192.0.2.1", "--helo", "mx.example.org"},
		{"check", "-config", "", "--from=alice@example.org", "--rcpt", "bob@example.net", "--rcpt", "carol@example.net", "--ip", "192.0.2.1", "--helo", "mx.example.org", "-"},
	} {
		stdin, _ := os.ReadFile("../../testdata/messages/forged-verdict.eml")
		rc, out, errs := runCmd(t, string(stdin), args...)
		if rc != 0 {
			t.Fatalf("%v: exit %d: %s", args, rc, errs)
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v: not JSON: %v\n%s", args, err, out)
		}
		for _, k := range []string{"action", "verdict", "score", "verdicts", "allowlist", "identity", "reasons", "headers_added", "headers_removed"} {
			if _, ok := d[k]; !ok {
				t.Errorf("%v: no %q in %s", args, k, out)
			}
		}
		if d["action"] != "deliver" || d["verdict"] != "unscanned" || len(d["headers_removed"].([]any)) != 4 {
			t.Errorf("%v: decision %s", args, out)
		}
		id := d["identity"].(map[string]any)
		if id["mail_from"] != "alice@example.org" || id["client_ip"] != "192.0.2.1" || id["from"] != "spam@spam.example" {
			t.Errorf("%v: identity %v", args, id)
		}
	}
}

func TestCheckText(t *testing.T) {
	rc, out, _ := runCmd(t, "", "check", "--format", "text", "../../testdata/messages/ham.eml")
	if rc != 0 || !strings.Contains(out, "verdict:  unscanned") || !strings.Contains(out, "add:      X-FPSafe-Verdict: unscanned; score=0.0") {
		t.Fatalf("exit %d:\n%s", rc, out)
	}
}

// A malformed message still gets a decision (exit 0).
func TestCheckMalformed(t *testing.T) {
	rc, out, errs := runCmd(t, "", "check", "../../testdata/messages/malformed-header.eml")
	if rc != 0 || !strings.Contains(out, `"action": "deliver"`) {
		t.Fatalf("exit %d: %s %s", rc, out, errs)
	}
}

func TestCheckExitStatus(t *testing.T) {
	for _, c := range []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"check", "/nonexistent.eml"}, 1, "no such file"},
		{[]string{"check", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"check", "--ip", "not-an-ip", "-"}, 2, "--ip"},
		{[]string{"check", "-config", "../../testdata/config/bad-01-typo.toml", "-"}, 2, "quarantine_scroe"},
		{[]string{"check", "a.eml", "b.eml"}, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"config", "check", "--config", "../../testdata/config/bad-04-remote-listen.toml"}, 2, "not a loopback"},
	} {
		rc, _, errs := runCmd(t, "", c.args...)
		if rc != c.rc || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", c.args, rc, errs, c.rc, c.msg)
		}
	}
}

func TestConfigCheckPrintsEffectiveConfig(t *testing.T) {
	rc, out, errs := runCmd(t, "", "config", "check", "--config", "../../testdata/config/engines.toml")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errs)
	}
	for _, want := range []string{"# ../../testdata/config/engines.toml: OK", `subject_prefix = "[SPAM]"`, `max_size = "25MiB"`, `timeout = "6s"`, `weight = 2.0`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// config check never prints the Redis password.
func TestConfigCheckRedactsSecrets(t *testing.T) {
	conf := t.TempDir() + "/redis.toml"
	os.WriteFile(conf, []byte("[allowlist]\nredis = \"redis://fpsafe:S3cr3t-pw@127.0.0.1:6379/0\"\n"), 0o644)
	rc, out, errs := runCmd(t, "", "config", "check", "-config", conf)
	if rc != 0 || strings.Contains(out+errs, "S3cr3t-pw") || !strings.Contains(out, "redis://fpsafe:") {
		t.Fatalf("exit %d, output:\n%s%s", rc, out, errs)
	}
}
