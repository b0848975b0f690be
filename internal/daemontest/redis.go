package daemontest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server started by StartRedis: 127.0.0.1 only, no persistence, state
// in a temp dir.
type Redis struct {
	Addr string // "127.0.0.1:PORT", for go-redis Options.Addr
	Dir  string
	Proc *Process
}

// StartRedis starts a fresh redis-server on a free port of 127.0.0.1 (no RDB snapshots, no
// AOF, no unix socket), waits until it answers PING, and stops it when the test ends. The
// test is skipped when redis-server is missing (a failure under CI=true).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := Require(t, "redis-server")
	dir := StateDir(t)
	port := FreePort(t)
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir}
	conf := WriteFile(t, dir, "redis.conf", fmt.Sprintf(`# fpsafe test redis (internal/daemontest/redis.go)
bind 127.0.0.1
port %d
protected-mode yes
daemonize no
dir %s
pidfile %s
logfile ""
save ""
appendonly no
`, port, dir, filepath.Join(dir, "redis.pid")))
	r.Proc = Start(t, "redis-server", exec.Command(bin, conf))
	WaitTCP(t, r.Proc, r.Addr, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := r.Ping()
		if err == nil {
			return r
		}
		if r.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("redis-server on %s gave no PONG: %v\n%s", r.Addr, err, tail(r.Proc.Output(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Ping sends PING in RESP and expects +PONG, within 2 s.
func (r *Redis) Ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop ends redis-server now (SIGTERM, then SIGKILL after 5 s): tests use it to see how
// fpsafe copes with a dead allowlist store. Safe to call twice.
func (r *Redis) Stop() { r.Proc.Stop() }
