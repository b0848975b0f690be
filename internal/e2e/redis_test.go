package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
)

// TestRedisHelper checks daemontest.StartRedis, which the redis drill of TestEndToEnd
// will use once fpsafe keeps its allowlist in redis: it starts, answers PING, and is gone
// (port closed) after Stop.
func TestRedisHelper(t *testing.T) {
	r := daemontest.StartRedis(t)
	if err := r.Ping(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	r.Stop()
	if !r.Proc.Exited() {
		t.Fatal("redis-server still running after Stop")
	}
	if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", r.Addr)
	}
	r.Stop() // twice is fine
}
