package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The classic milters that fpsafe replaces, for side-by-side benchmarks (internal/bench):
// clamav-milter in front of clamd, spamass-milter forking spamc to spamd, and rspamd's proxy
// worker in milter mode. Each runs on 127.0.0.1 with its config in a temp dir and is stopped
// by PID when the test ends. Addresses are returned in Postfix syntax ("inet:127.0.0.1:PORT").
//
// Traps avoided (see the lab notes): Debian's clamav-milter.conf defaults to OnInfected
// Quarantine / OnFail Defer / unix sockets, here Reject / Accept / TCP; Debian's
// /etc/default/spamass-milter passes -i 127.0.0.1 (skip loopback clients: nothing would be
// scanned on loopback), here no -i; spamc's default -s (500 KB) passes bigger mail through
// unscanned, here -s 10485760; rspamd's proxy ships with count = 1 and milter_headers skips
// local mail (skip_local = true), here count = 2 and skip_local = false.

// Milter is a milter daemon started by StartClamavMilter or StartSpamassMilter.
type Milter struct {
	Addr string // Postfix syntax, "inet:127.0.0.1:PORT"
	Dir  string
	Proc *Process
}

// StartClamavMilter starts clamav-milter in the foreground in front of clamd (c.Addr, a TCP
// address) with OnInfected Reject, OnFail Accept and AddHeader Replace.
func StartClamavMilter(t testing.TB, c *ClamdDaemon) *Milter {
	t.Helper()
	bin := Require(t, "clamav-milter")
	dir := StateDir(t)
	port := FreePort(t)
	clamd := strings.TrimPrefix(c.Addr, "inet:")
	conf := []string{
		fmt.Sprintf("MilterSocket inet:%d@127.0.0.1", port),
		"Foreground yes",
		"ClamdSocket tcp:" + clamd,
		"OnClean Accept",
		"OnInfected Reject",
		"OnFail Accept",
		"AddHeader Replace",
		"MaxFileSize 25M",
		"ReadTimeout 120",
		"PidFile " + filepath.Join(dir, "clamav-milter.pid"),
		"TemporaryDirectory " + dir,
		"LogFile " + filepath.Join(dir, "clamav-milter.log"),
		"LogInfected Basic",
	}
	cfg := WriteFile(t, dir, "clamav-milter.conf", strings.Join(conf, "\n")+"\n")
	p := Start(t, "clamav-milter", exec.Command(bin, "--config-file="+cfg))
	WaitTCP(t, p, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	return &Milter{Addr: fmt.Sprintf("inet:127.0.0.1:%d", port), Dir: dir, Proc: p}
}

// StartSpamassMilter starts spamass-milter (foreground) that forks `spamc -d 127.0.0.1 -p
// PORT -s 10485760` per message against s. No -i: every loopback message is scanned.
func StartSpamassMilter(t testing.TB, s *Spamd) *Milter {
	t.Helper()
	bin := Require(t, "spamass-milter")
	Require(t, "spamc")
	dir := StateDir(t)
	port := FreePort(t)
	host, sport, ok := strings.Cut(strings.TrimPrefix(s.Addr, "inet:"), ":")
	if !ok {
		t.Fatalf("spamd address %q: want inet:HOST:PORT", s.Addr)
	}
	args := []string{
		"-p", fmt.Sprintf("inet:%d@127.0.0.1", port),
		"-P", filepath.Join(dir, "spamass-milter.pid"),
		"--", "-d", host, "-p", sport, "-s", "10485760",
	}
	p := Start(t, "spamass-milter", exec.Command(bin, args...))
	WaitTCP(t, p, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	return &Milter{Addr: fmt.Sprintf("inet:127.0.0.1:%d", port), Dir: dir, Proc: p}
}

// RspamdMilter is an rspamd started by StartRspamdProxy: the normal worker (Addr, for
// fpsafe's rspamd engine) and the proxy worker in milter mode (MilterAddr, for Postfix's
// smtpd_milters) in one daemon, so both paths scan with the same rules and processes.
type RspamdMilter struct {
	*Rspamd
	MilterAddr string // "inet:127.0.0.1:PORT"
}

// StartRspamdProxy starts rspamd like StartRspamd plus a proxy worker with milter = yes,
// self_scan = yes and count = 2, and milter_headers with skip_local = false.
func StartRspamdProxy(t testing.TB) *RspamdMilter {
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
	port, proxy := FreePort(t), FreePort(t)
	writeRspamdConfig(t, dir, cache, port, FreePort(t))
	WriteFile(t, dir, "local/override.d/milter_headers.conf",
		"skip_local = false;\nskip_authenticated = false;\nuse = [\"x-spamd-bar\", \"x-spam-level\", \"authentication-results\"];\n")
	f, err := os.OpenFile(filepath.Join(dir, "rspamd.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%d";
    count = 2;
    milter = yes;
    timeout = 120s;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
    .include(try=true; priority=1,duplicate=merge) "$CONFDIR/worker-proxy.inc"
}
`, proxy)
	f.Close()

	args := []string{"-f", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var", "LOCAL_CONFDIR=" + filepath.Join(dir, "local"),
		"--var", "DBDIR=" + filepath.Join(dir, "db"),
		"--var", "RUNDIR=" + filepath.Join(dir, "run"),
		"--var", "LOGDIR=" + filepath.Join(dir, "log")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root", "-g", "root", "-i")
	}
	r := &Rspamd{Addr: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rspamd log:\n%s", tail(r.Log(), 4000))
		}
	})
	unlock := flockWait(t, filepath.Join(cache, ".lock"), rspamdStartTimeout)
	defer unlock()
	deadline := time.Now().Add(rspamdStartTimeout)
	r.Proc = Start(t, "rspamd", exec.Command(bin, args...))
	WaitTCP(t, r.Proc, fmt.Sprintf("127.0.0.1:%d", port), time.Until(deadline))
	WaitTCP(t, r.Proc, fmt.Sprintf("127.0.0.1:%d", proxy), time.Until(deadline))
	r.waitReady(t, deadline)
	return &RspamdMilter{Rspamd: r, MilterAddr: fmt.Sprintf("inet:127.0.0.1:%d", proxy)}
}
