package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/scoring/enginetest"
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
		func() (*gomilter.Action, error) { return nil, s.Macros(gomilter.CodeMail, "i", "QSERVE") },
		func() (*gomilter.Action, error) { return s.Mail("<a@example.org>", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<b@example.net>", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("Subject", " hi") },
		func() (*gomilter.Action, error) { return s.HeaderEnd() },
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("hello\r\n")) },
	}
	for _, st := range steps {
		if a, err := st(); err != nil || (a != nil && a.Code != gomilter.ActContinue) {
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
	list := filepath.Join(dir, "allowlist.toml")
	example, _ := os.ReadFile("../../testdata/allowlist/example.toml")
	os.WriteFile(list, example, 0o644)
	decisions := filepath.Join(dir, "decisions.log")
	metrics := freeAddr(t)
	good := "[milter]\nlisten = \"unix:" + sock + "\"\nsocket_mode = \"0600\"\n" +
		"[metrics]\nlisten = \"" + metrics + "\"\n[log]\ndecisions = \"" + decisions + "\"\n" +
		"[allowlist]\nfile = \"" + list + "\"\n[auth]\nresolver = \"127.0.0.1:9\"\ntimeout = \"200ms\"\n"
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
	checkObservability(t, metrics, decisions)

	// an invalid allowlist edit is refused on SIGHUP and the last good list stays
	os.WriteFile(list, append(example, []byte("\n[[entry]]\nid = \"broken\"\n")...), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "allowlist refusal", func() bool { return strings.Contains(logs.String(), "allowlist reload refused") })
	if body := httpGet(t, "http://"+metrics+"/readyz"); !strings.Contains(body, `"entries": 5`) {
		t.Fatalf("readyz after a refused allowlist edit:\n%s", body)
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

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// checkObservability: the decision is counted in /metrics, /healthz and /readyz answer,
// the decision log has the record and `fpsafe explain` prints it.
func checkObservability(t *testing.T, metrics, decisions string) {
	t.Helper()
	m := httpGet(t, "http://"+metrics+"/metrics")
	for _, want := range []string{
		`fpsafe_messages_total{action="deliver",verdict="unscanned"} 1`,
		`fpsafe_unscanned_total{reason="no_engines"} 1`,
		"fpsafe_sessions_in_flight 0", "fpsafe_spool_bytes 0", "fpsafe_allowlist_snapshot_age_seconds",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if h := httpGet(t, "http://"+metrics+"/healthz"); strings.TrimSpace(h) != "ok" {
		t.Errorf("/healthz %q", h)
	}
	rd := httpGet(t, "http://"+metrics+"/readyz")
	if !strings.Contains(rd, `"ready": true`) || !strings.Contains(rd, `"entries": 5`) || !strings.Contains(rd, `"age_seconds"`) {
		t.Errorf("/readyz:\n%s", rd)
	}
	var log []byte
	for i := 0; i < 100 && !strings.Contains(string(log), `"queue_id":"QSERVE"`); i++ {
		time.Sleep(50 * time.Millisecond)
		log, _ = os.ReadFile(decisions)
	}
	if !strings.Contains(string(log), `"queue_id":"QSERVE"`) {
		t.Fatalf("decision log:\n%s", log)
	}
	rc, out, errs := runCmd(t, "", "explain", "QSERVE", decisions)
	if rc != 0 || !strings.Contains(out, "decision:   deliver, verdict unscanned") || !strings.Contains(out, "unscanned: no engines configured") ||
		!strings.Contains(out, "client:     192.0.2.1") || !strings.Contains(out, "to:         b@example.net") {
		t.Errorf("explain: exit %d %s\n%s", rc, errs, out)
	}
	if rc, _, _ := runCmd(t, "", "explain", "NOPE", decisions); rc != 1 {
		t.Errorf("explain of an unknown queue id: exit %d", rc)
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

// SIGTERM while a message is being scanned: fpsafe stops accepting, lets the message get
// its decision, then exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	// a clamd that takes a second per scan
	scanning := make(chan struct{}, 1)
	slow := enginetest.NewServer(t, func(c net.Conn) {
		scanning <- struct{}{}
		enginetest.Reply("stream: OK\x00", time.Second)(c)
	})
	dir := t.TempDir()
	sock := filepath.Join(dir, "fpsafe.sock")
	conf := filepath.Join(dir, "fpsafe.toml")
	os.WriteFile(conf, []byte("[milter]\nlisten = \"unix:"+sock+"\"\n[metrics]\nlisten = \"\"\n[[engine]]\ntype = \"clamd\"\naddress = \""+slow.Addr+"\"\n"), 0o644)
	var logs syncBuf
	cmd := exec.Command(bin, "serve", "-config", conf)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "listening", func() bool { return strings.Contains(logs.String(), "fpsafe listening") })
	verdict := make(chan string, 1)
	go func() { verdict <- oneMessage(t, "unix", sock) }()
	select {
	case <-scanning:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine was never asked")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if v := <-verdict; v != "clean; score=0.0" {
		t.Fatalf("message in flight at SIGTERM got %q", v)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "draining messages in flight") || !strings.Contains(logs.String(), "in_flight=1") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
