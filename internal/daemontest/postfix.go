package daemontest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions configure the Postfix that StartPostfix runs.
type PostfixOptions struct {
	// Milter is the smtpd_milters value, e.g. "inet:127.0.0.1:8890" (Postfix syntax); "" runs
	// without a milter. milter_default_action is always accept: a dead milter must not stop mail.
	Milter string
	// RelayHost is "127.0.0.1:PORT": every message is relayed there (mydestination is empty),
	// typically to a test's SMTP sink.
	RelayHost string
	// MainCF holds extra main.cf lines ("name = value"), appended after the defaults so
	// that they override them.
	MainCF []string
}

// Postfix is a private Postfix instance started by StartPostfix: its own config directory,
// queue and data directories and log file in a temp dir, smtpd on 127.0.0.1 only, chroot off.
type Postfix struct {
	Addr     string // smtpd, "127.0.0.1:PORT"
	Dir      string // state dir
	ConfDir  string // main.cf, master.cf: the -c argument of postfix, postqueue, postcat
	QueueDir string
	LogFile  string // maillog_file

	bin, postqueue, postcat string
}

// StartPostfix starts `postfix -c DIR start` with a generated main.cf and master.cf, waits
// until smtpd accepts connections, and stops it (postfix stop, then the master by PID) when
// the test ends, failed or not. Missing Postfix skips the test (fails under CI=true).
//
// The traps it avoids: maillog_file must lie under maillog_file_prefixes (else postfix
// exits 1 without a word), Debian's master.cf chroots the daemons into the queue directory
// (here chroot is n everywhere), the queue directory must exist before start, and Postfix
// >= 3.11 defaults milter_default_action to shutdown.
func StartPostfix(t testing.TB, o PostfixOptions) *Postfix {
	t.Helper()
	bin := Require(t, "postfix")
	postqueue := Require(t, "postqueue")
	postcat := Require(t, "postcat")
	if _, err := user.Lookup("postfix"); err != nil {
		Missing(t, "user postfix missing (created by Debian's postfix package): %v", err)
	}
	if os.Geteuid() != 0 {
		Missing(t, "postfix -c DIR start needs root")
	}
	if o.RelayHost == "" {
		t.Fatal("StartPostfix: RelayHost is required")
	}
	dir := StateDir(t)
	p := &Postfix{
		Dir:       dir,
		ConfDir:   filepath.Join(dir, "conf"),
		QueueDir:  filepath.Join(dir, "queue"),
		LogFile:   filepath.Join(dir, "maillog"),
		bin:       bin,
		postqueue: postqueue,
		postcat:   postcat,
	}
	port := FreePort(t)
	p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	data := filepath.Join(dir, "data")
	for _, d := range []string{p.QueueDir, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := user.Lookup("postfix"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		os.Chown(data, uid, -1) // data_directory belongs to mail_owner
	}
	WriteFile(t, p.ConfDir, "main.cf", postfixMainCF(p, data, o))
	WriteFile(t, p.ConfDir, "master.cf", postfixMasterCF(port))

	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("postfix log:\n%s", tail(p.Log(), 6000))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-c", p.ConfDir, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix -c %s start: %v\n%s\n%s", p.ConfDir, err, out, tail(p.Log(), 4000))
	}
	WaitTCP(t, nil, p.Addr, 60*time.Second)
	return p
}

func postfixMainCF(p *Postfix, data string, o PostfixOptions) string {
	lines := []string{
		"# fpsafe test Postfix (internal/daemontest/postfix.go)",
		"compatibility_level = 3.6",
		"queue_directory = " + p.QueueDir,
		"data_directory = " + data,
		"maillog_file = " + p.LogFile,
		"maillog_file_prefixes = /var, /dev/stdout, " + p.Dir,
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"myhostname = postfix.e2e.test",
		"mydomain = e2e.test",
		"myorigin = e2e.test",
		"mydestination =",
		"relay_domains =",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
		"relayhost = [" + strings.Replace(o.RelayHost, ":", "]:", 1),
		"smtp_dns_support_level = disabled", // no DNS here: the relay host is a literal
		"smtp_host_lookup = native",
		"smtpd_peername_lookup = no",
		"smtputf8_enable = yes",
		"message_size_limit = 52428800",
		"biff = no",
		// Deferred mail is retried within seconds, so that a test's bounded wait sees it.
		"queue_run_delay = 5s",
		"minimal_backoff_time = 5s",
		"maximal_backoff_time = 10s",
		"milter_default_action = accept",
		"milter_content_timeout = 60s",
	}
	if o.Milter != "" {
		lines = append(lines, "smtpd_milters = "+o.Milter, "non_smtpd_milters = $smtpd_milters")
	}
	lines = append(lines, o.MainCF...)
	return strings.Join(lines, "\n") + "\n"
}

// postfixMasterCF is Debian's master.cf reduced to the services a relay needs, with chroot
// n everywhere (a private queue directory has no copies of /etc to chroot into), smtpd on
// 127.0.0.1:port only, and postlogd for maillog_file.
func postfixMasterCF(port int) string {
	return fmt.Sprintf(`# fpsafe test Postfix (internal/daemontest/postfix.go)
127.0.0.1:%d inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`, port)
}

// Stop runs `postfix stop` and makes sure the master is gone (by the PID in
// queue/pid/master.pid). Safe to call twice.
func (p *Postfix) Stop() {
	pidfile := filepath.Join(p.QueueDir, "pid", "master.pid")
	pid := readPID(pidfile)
	if pid <= 1 || !alive(pid) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec.CommandContext(ctx, p.bin, "-c", p.ConfDir, "stop").Run()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && alive(pid); {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		StopPIDFile(pidfile)
	}
	// The master's children leave on their own once it is gone; give them a moment.
	KillByCwd(p.Dir, 5*time.Second)
}

// KillByCwd ends what is left of a stopped MTA: processes whose working directory lies
// under dir (Postfix and Sendmail daemons chdir to their queue directory; Sendmail's
// delivery children detach from the daemon's process group). It waits up to grace for
// them to leave, then SIGKILLs each by PID, so that the temp dir can be removed.
func KillByCwd(dir string, grace time.Duration) {
	for end := time.Now().Add(grace); ; time.Sleep(100 * time.Millisecond) {
		pids := pidsInDir(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(end) {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
	}
}

// pidsInDir lists the live processes whose cwd is dir or below it (none without /proc).
func pidsInDir(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		if alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid runs: it exists and is no zombie (the master is a daemon,
// a child of init, and an init that reaps late leaves it a zombie for a while).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// Log returns the maillog so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.LogFile)
	return string(b)
}

// PostfixQueued is one message in the queue, as `postqueue -j` lists it.
type PostfixQueued struct {
	QueueName  string `json:"queue_name"` // "hold" for quarantined mail; incoming, active, deferred
	QueueID    string `json:"queue_id"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// Queue lists every queued message, the hold queue included (`postqueue -c DIR -j`).
func (p *Postfix) Queue() ([]PostfixQueued, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.postqueue, "-c", p.ConfDir, "-j").Output()
	if err != nil {
		return nil, fmt.Errorf("postqueue -j: %w", err)
	}
	var q []PostfixQueued
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e PostfixQueued
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("postqueue -j: %w in %q", err, sc.Text())
		}
		q = append(q, e)
	}
	return q, sc.Err()
}

// Headers returns the header section of a queued message (`postcat -h -q ID`), with the
// headers a milter added.
func (p *Postfix) Headers(queueID string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.postcat, "-c", p.ConfDir, "-h", "-q", queueID).Output()
	if err != nil {
		return "", fmt.Errorf("postcat -h -q %s: %w", queueID, err)
	}
	return string(out), nil
}

// Flush asks Postfix to retry deferred mail now (`postqueue -f`).
func (p *Postfix) Flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, p.postqueue, "-c", p.ConfDir, "-f").Run()
}

// readPID reads the first line of a pid file (Postfix pads it with spaces, Sendmail adds a
// second line with its command line); 0 when there is none.
func readPID(pidfile string) int {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}
