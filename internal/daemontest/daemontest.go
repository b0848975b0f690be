// Package daemontest starts real daemons from Debian packages (clamd, spamd, rspamd,
// redis-server, ...) for tests: on 127.0.0.1, on free ports, with state in a temp dir, and
// stopped by PID when the test ends. When a daemon's binary is missing the test is skipped,
// except under CI=true, where a missing component is a failure.
package daemontest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether missing components must fail rather than skip (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require returns the path of binary, looked up in PATH and the sbin directories. When it
// is missing the test fails under CI=true and is skipped otherwise.
func Require(t testing.TB, binary string) string {
	t.Helper()
	for _, p := range []string{binary, "/usr/sbin/" + binary, "/usr/bin/" + binary, "/sbin/" + binary} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	Missing(t, "%s not installed (run scripts/install-deps.sh as root)", binary)
	return ""
}

// Missing reports a missing component: a failure under CI=true, a skip otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a daemon started by Start.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  *bytes.Buffer // combined stdout and stderr

	mu     sync.Mutex
	exited chan struct{}
}

// Start runs the command in its own process group, with its output captured, and arranges
// for it to be stopped (SIGTERM, then SIGKILL) when the test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: cmd, Log: &bytes.Buffer{}, exited: make(chan struct{})}
	w := &lockedWriter{mu: &p.mu, b: p.Log}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.Output(), 4000))
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Log.String()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Stop ends the process group: SIGTERM, and SIGKILL after 5 s.
func (p *Process) Stop() {
	if p.Cmd.Process == nil || p.Exited() {
		return
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// StopPIDFile ends a daemonised process whose PID is the first line of pidfile.
func StopPIDFile(pidfile string) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return
	}
	var pid int
	fmt.Sscan(strings.SplitN(string(b), "\n", 2)[0], &pid)
	if pid <= 1 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// WaitTCP waits until addr accepts connections, the process exits, or timeout passes.
func WaitTCP(t testing.TB, p *Process, addr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("%s exited before listening on %s:\n%s", p.Name, addr, tail(p.Output(), 4000))
		}
		select {
		case <-ctx.Done():
			out := ""
			if p != nil {
				out = tail(p.Output(), 4000)
			}
			t.Fatalf("%s not listening after %s:\n%s", addr, timeout, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WriteFile writes a file under dir, creating parent directories, and returns its path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// StateDir returns a temp dir that daemons running as other users can enter (mode 0755).
func StateDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parent is 0700 for root-only tests; open it for daemons that drop privileges.
	os.Chmod(filepath.Dir(d), 0o755)
	return d
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
