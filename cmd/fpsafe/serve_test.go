package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// buildBinary compiles fpsafe once per test binary run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fpsafe-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fpsafe")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// oneMessage sends a message through the milter at sock and returns fpsafe's verdict field.
func oneMessage(t *testing.T, network, addr string) string {
	t.Helper()
	c := gomilter.NewClientWithOptions(network, addr, gomilter.ClientOptions{
		ActionMask:  gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("mx.example.org", gomilter.FamilyInet, 25, "192.0.2.1")
		},
		func() (*gomilter.Action, error) { return s.Mail("<a@example.org>", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<b@example.net>", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("Subject", " hi") },
		func() (*gomilter.Action, error) { return s.HeaderEnd() },
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("hello\r\n")) },
	}
	for _, st := range steps {
		if a, err := st(); err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("step: %v %v", a, err)
		}
	}
	mods, act, err := s.End()
	if err != nil || act.Code != gomilter.ActContinue {
		t.Fatalf("end: %v %v", act, err)
	}
	for _, m := range mods {
		if m.Code == gomilter.ActAddHeader && m.HeaderName == "X-FPSafe-Verdict" {
			return strings.TrimSpace(m.HeaderValue)
		}
	}
	t.Fatalf("no verdict in %v", mods)
	return ""
}

// fpsafe serve on a unix socket: a stale socket is replaced, messages are decided, SIGHUP
// with an invalid config keeps the running one, SIGHUP with a valid one applies it, and
// SIGTERM exits 0.
func TestServe(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "fpsafe.sock")
	os.WriteFile(sock, nil, 0o644)
	os.Remove(sock)
	conf := filepath.Join(dir, "fpsafe.toml")
	good := "[milter]\nlisten = \"unix:" + sock + "\"\nsocket_mode = \"0600\"\n"
	os.WriteFile(conf, []byte(good), 0o644)

	var logs syncBuf
	cmd := exec.Command(bin, "serve", "--config", conf)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "listening", func() bool { return strings.Contains(logs.String(), "fpsafe listening") })
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
	if v := oneMessage(t, "unix", sock); v != "unscanned; score=0.0" {
		t.Fatalf("verdict %q", v)
	}

	os.WriteFile(conf, []byte(good+"[policy]\nquarantine_scroe = 1\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "refusal", func() bool { return strings.Contains(logs.String(), "new config refused") })
	if !strings.Contains(logs.String(), "quarantine_scroe") {
		t.Fatalf("refusal does not name the key:\n%s", logs.String())
	}
	if v := oneMessage(t, "unix", sock); v != "unscanned; score=0.0" {
		t.Fatalf("after refused reload: %q", v)
	}
	os.WriteFile(conf, []byte(good+"[policy]\ntag_score = 4\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
}

// With no -config, serve says it runs on the embedded default.
func TestServeDefaultConfigSaysSo(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var logs syncBuf
	cmd := exec.Command(bin, "serve")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "start", func() bool {
		l := logs.String()
		return strings.Contains(l, "fpsafe listening") || strings.Contains(l, "address already in use")
	})
	if !strings.Contains(logs.String(), "embedded default config") {
		t.Fatalf("no mention of the embedded default:\n%s", logs.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
