package daemontest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// spamdUser is the unprivileged user Debian's spamd package creates; spamd started as root
// without -u would fall back to nobody.
const spamdUser = "debian-spamd"

// Spamd is a SpamAssassin spamd started by StartSpamd: local tests only (-L), no Bayes, no
// DNS, no per-user config, the rules Debian ships in /usr/share/spamassassin, and two
// children at most. It listens on TCP and on a unix socket.
type Spamd struct {
	Addr   string   // "inet:127.0.0.1:PORT"
	Socket string   // "unix:/path/spamd.sock"
	Dir    string   // state directory (home, pid file)
	Proc   *Process // the spamd parent; its children share its process group
}

// StartSpamd starts a fresh spamd on a free port and a unix socket in a temp dir, waits
// until it answers PING (rules parsed, a child ready: ~2 s), and stops it when the test
// ends. Tests call Stop to take it away mid-test. It skips (fails under CI=true) when spamd
// or its rules are missing.
func StartSpamd(t testing.TB) *Spamd {
	t.Helper()
	bin := Require(t, "spamd")
	if _, err := os.Stat("/usr/share/spamassassin/10_default_prefs.cf"); err != nil {
		Missing(t, "spamd rules missing in /usr/share/spamassassin: %v", err)
	}
	dir := StateDir(t)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	sock := filepath.Join(socketDir(t), "spamd.sock")
	args := []string{
		"-x", "-L", "-H" + home,
		"--cf=use_bayes 0", "--cf=dns_available no",
		"--listen=" + addr, "--listen=" + sock,
		"--pidfile=" + filepath.Join(dir, "spamd.pid"),
		"--max-children=2", "--min-children=1",
		"--syslog=stderr", // no syslog here: the log goes to Process.Output
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(spamdUser)
		if err != nil {
			Missing(t, "user %s missing (created by Debian's spamd package): %v", spamdUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(home, uid, gid); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--username="+spamdUser)
	}
	start := time.Now()
	p := Start(t, "spamd", exec.Command(bin, args...))
	s := &Spamd{Addr: "inet:" + addr, Socket: "unix:" + sock, Dir: dir, Proc: p}
	WaitTCP(t, p, addr, 30*time.Second)
	s.waitPong(t, addr, 30*time.Second)
	t.Logf("spamd ready on %s and %s in %s", s.Addr, s.Socket, time.Since(start).Round(time.Millisecond))
	return s
}

// Stop ends spamd and its children (SIGTERM to the process group, then SIGKILL).
func (s *Spamd) Stop() { s.Proc.Stop() }

// waitPong sends PING until spamd answers PONG: the TCP port is bound before the rules are
// parsed and a child is ready, so a first scan right after WaitTCP could take seconds.
func (s *Spamd) waitPong(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if s.Proc.Exited() {
			t.Fatalf("spamd exited:\n%s", tail(s.Proc.Output(), 4000))
		}
		if last = pingSpamd(addr, time.Until(deadline)); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("spamd on %s gave no PONG within %s (%s):\n%s", addr, timeout, last, tail(s.Proc.Output(), 4000))
}

// pingSpamd returns "" on PONG, or what went wrong.
func pingSpamd(addr string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING SPAMC/1.5\r\n\r\n")); err != nil {
		return err.Error()
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	if f := strings.Fields(line); len(f) == 3 && f[1] == "0" && f[2] == "PONG" {
		return ""
	}
	return fmt.Sprintf("reply %q", line)
}

// socketDir returns a short private directory for a unix socket: t.TempDir paths built
// from long test names can pass the 108-byte sun_path limit.
func socketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "spamd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
