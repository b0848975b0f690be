package daemontest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rspamdStartTimeout bounds an rspamd start. A cold start compiles hyperscan databases
// (15-18 s on the lab machine, more when several test binaries start rspamd at once).
const rspamdStartTimeout = 120 * time.Second

// rspamdNetworkModules are the modules that query DNS or remote services, or need redis.
// They are disabled so that scans stay on loopback, fast and repeatable.
var rspamdNetworkModules = []string{
	"rbl", "surbl", "emails", "fuzzy_check", "phishing", "multimap", "whitelist",
	"rspamd_update", "mid", "asn", "spf", "dkim", "dmarc", "arc", "dcc", "hfilter",
	"url_redirector", "greylist", "neural", "ratelimit", "replies", "reputation",
	"mx_check", "dkim_signing", "bimi", "metadata_exporter", "metric_exporter",
	"clickhouse", "elastic", "history_redis",
}

// Rspamd is an rspamd started by StartRspamd: normal workers on 127.0.0.1, Debian's rules
// from /etc/rspamd (left untouched), network modules off, and state in a temp dir.
type Rspamd struct {
	// Addr is the normal worker's URL, "http://127.0.0.1:PORT": an rspamd engine address.
	Addr string
	// Dir holds the private config and the run, db and log directories.
	Dir string
	// Proc is the daemon's main process; its workers share its process group.
	Proc *Process
}

// Stop ends rspamd and its workers. Tests call it to see how clients cope with a dead
// engine; it is also called when the test ends, and may be called more than once.
func (r *Rspamd) Stop() { r.Proc.Stop() }

// Log returns rspamd's log file so far (one line per scan, start-up, errors).
func (r *Rspamd) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "log", "rspamd.log"))
	return string(b)
}

// RspamdCacheDir is where compiled hyperscan databases are kept across test runs, so that
// only the first start on a machine pays for compiling them: $FPSAFE_RSPAMD_CACHE, or
// fpsafe/rspamd under the user's cache directory (/var/tmp when there is none).
func RspamdCacheDir() string {
	if d := os.Getenv("FPSAFE_RSPAMD_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = "/var/tmp"
	}
	return filepath.Join(base, "fpsafe", "rspamd")
}

// StartRspamd starts a fresh rspamd on a free port and waits until it answers /ping and
// has loaded its hyperscan database (or up to two minutes). It is stopped when the test
// ends. Without the rspamd package the test is skipped (fails under CI=true).
func StartRspamd(t testing.TB) *Rspamd {
	t.Helper()
	bin := Require(t, "rspamd")
	if _, err := os.Stat("/etc/rspamd/rspamd.conf"); err != nil {
		Missing(t, "rspamd rules not installed in /etc/rspamd: %v", err)
	}
	cache := RspamdCacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatalf("rspamd hyperscan cache: %v", err)
	}
	dir := StateDir(t)
	port := FreePort(t)
	writeRspamdConfig(t, dir, cache, port, FreePort(t))

	args := []string{"-f", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var", "LOCAL_CONFDIR=" + filepath.Join(dir, "local"),
		"--var", "DBDIR=" + filepath.Join(dir, "db"),
		"--var", "RUNDIR=" + filepath.Join(dir, "run"),
		"--var", "LOGDIR=" + filepath.Join(dir, "log")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root", "-g", "root", "-i") // state dirs are root's
	}
	r := &Rspamd{Addr: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rspamd log:\n%s", tail(r.Log(), 4000))
		}
	})

	// One start at a time per cache: a cold start compiles the shared databases once, and
	// the starts that waited then load them in about a second.
	unlock := flockWait(t, filepath.Join(cache, ".lock"), rspamdStartTimeout)
	defer unlock()
	deadline := time.Now().Add(rspamdStartTimeout)
	r.Proc = Start(t, "rspamd", exec.Command(bin, args...))
	WaitTCP(t, r.Proc, fmt.Sprintf("127.0.0.1:%d", port), time.Until(deadline))
	r.waitReady(t, deadline)
	return r
}

// waitReady waits for "pong" and, when rspamd uses hyperscan, for its database to load, so
// that the first scans are not measured against the slower PCRE fallback.
func (r *Rspamd) waitReady(t testing.TB, deadline time.Time) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for pong := false; ; {
		if !pong {
			pong = pingRspamd(hc, r.Addr)
		}
		log := r.Log()
		if pong && (!strings.Contains(log, "loaded hyperscan engine") || strings.Contains(log, "full hyperscan database of")) {
			return
		}
		if r.Proc.Exited() {
			t.Fatal("rspamd exited during start-up") // its output and log follow at cleanup
		}
		if time.Now().After(deadline) {
			t.Fatalf("rspamd not ready after %s (pong: %v)", rspamdStartTimeout, pong)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pingRspamd(hc *http.Client, base string) bool {
	resp, err := hc.Get(base + "/ping")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "pong"
}

// writeRspamdConfig writes a top-level rspamd.conf that includes Debian's rules but binds
// only 127.0.0.1:port, logs to dir/log, keeps hyperscan in cache, and sends DNS to a closed
// local port so that remote map fetches fail at once instead of leaving the machine.
func writeRspamdConfig(t testing.TB, dir, cache string, port, dnsPort int) {
	t.Helper()
	for _, d := range []string{"run", "db", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range rspamdNetworkModules {
		WriteFile(t, dir, "local/override.d/"+m+".conf", "enabled = false;\n")
	}
	WriteFile(t, dir, "local/override.d/options.inc", fmt.Sprintf(`hs_cache_dir = %s;
dns {
  nameserver = ["127.0.0.1:%d"];
  timeout = 0.5s;
  retransmits = 1;
}
`, strconv.Quote(cache+"/"), dnsPort))
	WriteFile(t, dir, "rspamd.conf", fmt.Sprintf(`# fpsafe test rspamd: Debian's rules, private state (internal/daemontest/rspamd.go)
.include "$CONFDIR/common.conf"

options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}

logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
}

worker "normal" {
    bind_socket = "127.0.0.1:%d";
    count = 2;
    .include "$CONFDIR/worker-normal.inc"
}
`, port))
}

// flockWait takes an exclusive flock on path, waiting at most wait for it, and returns its
// release. Past wait it goes on unlocked (two cold starts only cost CPU). The lock dies
// with the process, so a killed test never leaves it stuck.
func flockWait(t testing.TB, path string, wait time.Duration) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lock %s: %v", path, err)
	}
	for end := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(end) {
			t.Logf("lock %s: %v; starting without it", path, err)
			f.Close()
			return func() {}
		}
	}
}
