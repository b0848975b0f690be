package daemontest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SendmailPackages are the Debian packages unpacked (never installed: sendmail-bin and
// postfix conflict) into a private root for StartSendmail.
var SendmailPackages = []string{"sendmail-bin", "sendmail-base", "sendmail-cf"}

// SendmailHostName is the host name Sendmail runs under, in a private UTS namespace: with
// the machine's unqualified name and no DNS, Sendmail sleeps 60 s at start trying to
// qualify it.
const SendmailHostName = "sendmail.e2e.test"

// SendmailOptions configure the Sendmail that StartSendmail runs.
type SendmailOptions struct {
	// Milter is the libmilter socket spec, e.g. "inet:8890@127.0.0.1"; "" runs without
	// one. The filter is declared with no F= flag: a dead milter is skipped (fail open).
	Milter string
	// MilterTimeouts is the T= value; "" means "C:10s;S:10s;R:20s;E:5m" (R above fpsafe's
	// default decision_timeout of 8 s; Sendmail's own default R:10s is too tight).
	MilterTimeouts string
	// RelayHost is "127.0.0.1:PORT": every message is relayed there (SMART_HOST).
	RelayHost string
	// MC holds extra sendmail.mc lines, inserted before the MAILER lines.
	MC []string
}

// Sendmail is a private Sendmail daemon started by StartSendmail from an unpacked
// sendmail-bin, with an m4-built sendmail.cf, its own queue directory and pid file.
type Sendmail struct {
	Addr     string // the daemon, "127.0.0.1:PORT"
	Dir      string // state dir: sendmail.mc, sendmail.cf, mqueue/, sendmail.pid
	CF       string // sendmail.cf, the -C argument
	QueueDir string
	PIDFile  string // two lines: pid, command line
	Root     string // the unpacked packages

	pgid   int           // the daemon's pid, leader of its process group
	exited chan struct{} // closed when the daemon has ended
}

// SendmailBinary is the sendmail binary inside an unpacked root.
func SendmailBinary(root string) string {
	return filepath.Join(root, "usr", "libexec", "sendmail", "sendmail")
}

// SendmailRoot returns the unpacked sendmail packages (see DebTree), fetching them when
// they are missing; the test is skipped (failed under CI=true) when that is impossible or
// when a library sendmail needs (liblockfile1) is not installed.
func SendmailRoot(t testing.TB) string {
	t.Helper()
	root := DebTree(t, "sendmail", SendmailPackages...)
	bin := SendmailBinary(root)
	if _, err := os.Stat(bin); err != nil {
		Missing(t, "sendmail binary missing in %s: %v", root, err)
	}
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err == nil && strings.Contains(string(out), "not found") {
		Missing(t, "sendmail needs libraries that are not installed (liblockfile1?):\n%s", out)
	}
	return root
}

// StartSendmail builds sendmail.cf with m4 from the unpacked sendmail-cf, starts `sendmail
// -bD -q10s` (foreground daemon, queue run every 10 s) on a free port of 127.0.0.1 in a
// private UTS namespace named SendmailHostName, waits until it accepts connections, and
// stops it (SIGTERM to the PID in the pid file, then its process group) when the test ends,
// failed or not.
//
// Traps it avoids: an unqualified host name stalls start-up 60 s (unshare -u + hostname);
// the default listen backlog of 10 drops SYNs under parallel load (Listen=1024); a host
// status directory defers deliveries for no reason (none); /tmp needs TrustStickyBit; no
// DNS needs accept_unresolvable_domains; and a SMART_HOST of [127.0.0.1] is dropped as "local
// host" unless it names its mailer (relay:[127.0.0.1]).
func StartSendmail(t testing.TB, o SendmailOptions) *Sendmail {
	t.Helper()
	m4 := Require(t, "m4")
	if os.Geteuid() != 0 {
		Missing(t, "the test sendmail daemon needs root")
	}
	if o.RelayHost == "" {
		t.Fatal("StartSendmail: RelayHost is required")
	}
	root := SendmailRoot(t)
	dir := StateDir(t)
	s := &Sendmail{
		Dir:      dir,
		CF:       filepath.Join(dir, "sendmail.cf"),
		QueueDir: filepath.Join(dir, "mqueue"),
		PIDFile:  filepath.Join(dir, "sendmail.pid"),
		Root:     root,
	}
	if err := os.Mkdir(s.QueueDir, 0o700); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	WriteFile(t, dir, "service.switch", "hosts files\naliases files\n")
	WriteFile(t, dir, "aliases", "")
	mc := WriteFile(t, dir, "sendmail.mc", sendmailMC(s, port, o))
	cf, err := exec.Command(m4, mc).Output()
	if err != nil {
		t.Fatalf("m4 %s: %v", mc, err)
	}
	if err := os.WriteFile(s.CF, cf, 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{SendmailBinary(root), "-C", s.CF, "-bD", "-q10s"}
	var cmd *exec.Cmd
	if exec.Command("unshare", "-u", "true").Run() == nil {
		cmd = exec.Command("unshare", append([]string{"-u", "sh", "-c",
			`hostname "$0" && exec "$@"`, SendmailHostName}, args...)...)
	} else {
		t.Logf("unshare -u not available: sendmail may stall 60 s on an unqualified host name")
		cmd = exec.Command(args[0], args[1:]...)
	}
	s.start(t, cmd)
	return s
}

// start runs the daemon in its own process group with its output in a file, not a pipe:
// sendmail's delivery children detach (setsid) and would keep a pipe, and so the wait
// for the daemon, open long after it ended.
func (s *Sendmail) start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	out, err := os.Create(filepath.Join(s.Dir, "sendmail.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.Dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	s.pgid, s.exited = cmd.Process.Pid, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sendmail output:\n%s\nqueue:\n%s", s.Output(), s.Mailq(false))
		}
	})
	for deadline := time.Now().Add(100 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("sendmail exited before listening on %s:\n%s", s.Addr, s.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sendmail not listening on %s after 100 s:\n%s", s.Addr, s.Output())
		}
	}
}

// Output returns what the daemon printed (it logs to syslog, so mostly start-up errors).
func (s *Sendmail) Output() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sendmail.out"))
	return tail(string(b), 4000)
}

func sendmailMC(s *Sendmail, port int, o SendmailOptions) string {
	relayHost, relayPort, _ := strings.Cut(o.RelayHost, ":")
	q := func(v string) string { return "`" + v + "'" }
	def := func(name, v string) string { return "define(" + q(name) + ", " + q(v) + ")dnl" }
	lines := []string{
		"divert(-1)",
		"# fpsafe test Sendmail (internal/daemontest/sendmail.go)",
		"divert(0)dnl",
		"include(" + q(filepath.Join(s.Root, "usr/share/sendmail/cf/m4/cf.m4")) + ")dnl",
		"VERSIONID(`fpsafe e2e')dnl",
		"OSTYPE(`linux')dnl",
		def("confDONT_BLAME_SENDMAIL", "TrustStickyBit"),
		def("QUEUE_DIR", s.QueueDir),
		def("confPID_FILE", s.PIDFile),
		def("STATUS_FILE", filepath.Join(s.Dir, "statistics")),
		def("ALIAS_FILE", filepath.Join(s.Dir, "aliases")),
		def("confSERVICE_SWITCH_FILE", filepath.Join(s.Dir, "service.switch")),
		def("confDOMAIN_NAME", SendmailHostName),
		def("confTO_IDENT", "0"),
		def("confQUEUE_LA", "999"),
		def("confREFUSE_LA", "999"),
		def("confDELAY_LA", "0"),
		def("confLOG_LEVEL", "9"),
		def("SMART_HOST", "relay:["+relayHost+"]"),
		def("RELAY_MAILER_ARGS", "TCP $h "+relayPort),
		def("ESMTP_MAILER_ARGS", "TCP $h "+relayPort),
		def("LOCAL_MAILER_PATH", filepath.Join(s.Root, "usr/libexec/sendmail/mail.local")),
		def("confMILTER_MACROS_ENVFROM", "i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}, {client_addr}, {client_name}"),
		def("confMILTER_MACROS_EOM", "{msg_id}, i, {client_addr}"),
		"FEATURE(`no_default_msa')dnl",
		"FEATURE(`accept_unresolvable_domains')dnl",
		"FEATURE(`promiscuous_relay')dnl", // it listens on 127.0.0.1 only
		fmt.Sprintf("DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA, Listen=1024')dnl", port),
	}
	if o.Milter != "" {
		tm := o.MilterTimeouts
		if tm == "" {
			tm = "C:10s;S:10s;R:20s;E:5m"
		}
		lines = append(lines, fmt.Sprintf("INPUT_MAIL_FILTER(`fpsafe', `S=%s, T=%s')dnl", o.Milter, tm))
	}
	lines = append(lines, o.MC...)
	lines = append(lines, "MAILER(`local')dnl", "MAILER(`smtp')dnl")
	return strings.Join(lines, "\n") + "\n"
}

// Stop ends the daemon: SIGTERM to the PID in the pid file (its first line; SIGKILL after
// 5 s), then SIGKILL to what is left of its process group, then to its detached children
// (KillByCwd). Safe to call twice.
func (s *Sendmail) Stop() {
	StopPIDFile(s.PIDFile)
	if s.pgid <= 1 {
		return
	}
	syscall.Kill(-s.pgid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
	KillByCwd(s.Dir, 2*time.Second) // detached delivery and queue-run children
}

// SendmailQueued is one queue file: qf (waiting for delivery) or hf (quarantined).
type SendmailQueued struct {
	ID          string
	Quarantined bool
	Reason      string   // the quarantine reason (q line)
	Recipients  []string // R lines, without <>
	Headers     string   // "Name: value" lines, continuation lines kept
}

// Queue reads the queue directory: every qf file (pending) and hf file (quarantined; what
// `mailq -qQ` lists). Files that vanish while being read (delivered) are left out.
func (s *Sendmail) Queue() ([]SendmailQueued, error) {
	ents, err := os.ReadDir(s.QueueDir)
	if err != nil {
		return nil, err
	}
	var q []SendmailQueued
	for _, e := range ents {
		n := e.Name()
		if len(n) < 3 || (n[:2] != "qf" && n[:2] != "hf") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.QueueDir, n))
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		q = append(q, parseSendmailQF(n[2:], n[:2] == "hf", string(b)))
	}
	sort.Slice(q, func(i, j int) bool { return q[i].ID < q[j].ID })
	return q, nil
}

func parseSendmailQF(id string, hf bool, text string) SendmailQueued {
	e := SendmailQueued{ID: id, Quarantined: hf}
	var hdr strings.Builder
	inHeader := false
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && inHeader {
			hdr.WriteString(line + "\n")
			continue
		}
		inHeader = false
		switch line[0] {
		case 'R':
			if _, a, ok := strings.Cut(line, ":"); ok {
				e.Recipients = append(e.Recipients, strings.Trim(a, "<>"))
			}
		case 'q':
			e.Reason = line[1:]
		case 'H':
			h := line[1:]
			if strings.HasPrefix(h, "?") { // ?flags? prefix
				if i := strings.Index(h[1:], "?"); i >= 0 {
					h = h[i+2:]
				}
			}
			hdr.WriteString(h + "\n")
			inHeader = true
		}
	}
	e.Headers = hdr.String()
	return e
}

// Mailq returns `mailq` output for the queue (quarantined: `mailq -qQ`), for logs.
func (s *Sendmail) Mailq(quarantined bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"-C", s.CF, "-bp"}
	if quarantined {
		args = append(args, "-qQ")
	}
	out, _ := exec.CommandContext(ctx, SendmailBinary(s.Root), args...).CombinedOutput()
	return string(out)
}

// E2ECacheDir is where the unpacked Debian packages of the end-to-end tests (Sendmail, the
// enmime MIME corpus) are kept across runs: $FPSAFE_E2E_CACHE; else /var/cache/fpsafe-e2e
// when it exists or can be created (root; scripts/install-sendmail.sh fills it); else
// fpsafe/e2e under the user's cache directory.
func E2ECacheDir() string {
	if d := os.Getenv("FPSAFE_E2E_CACHE"); d != "" {
		return d
	}
	const system = "/var/cache/fpsafe-e2e"
	if st, err := os.Stat(system); err == nil && st.IsDir() && syscall.Access(system, 2) == nil {
		return system
	}
	if os.MkdirAll(system, 0o755) == nil {
		return system
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = "/var/tmp"
	}
	return filepath.Join(base, "fpsafe", "e2e")
}

// debTreeMarker is written last into an unpacked tree, listing its packages: a tree
// without it is half-unpacked and is unpacked again.
const debTreeMarker = ".fpsafe-unpacked"

// DebTree returns E2ECacheDir()/name, a tree holding the given Debian packages unpacked
// with dpkg-deb -x, after fetching them with `apt-get download` when the tree is missing
// (scripts/install-sendmail.sh and scripts/install-e2e-corpus.sh do the same ahead of
// time). Nothing is installed. When the packages cannot be had, the test is skipped
// (failed under CI=true).
func DebTree(t testing.TB, name string, pkgs ...string) string {
	t.Helper()
	cache := E2ECacheDir()
	tree := filepath.Join(cache, name)
	want := strings.Join(pkgs, " ") + "\n"
	if b, err := os.ReadFile(filepath.Join(tree, debTreeMarker)); err == nil && string(b) == want {
		return tree
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		Missing(t, "%s not unpacked and cache dir %s unusable: %v", name, cache, err)
	}
	unlock := flockWait(t, filepath.Join(cache, ".lock"), 5*time.Minute)
	defer unlock()
	if b, err := os.ReadFile(filepath.Join(tree, debTreeMarker)); err == nil && string(b) == want {
		return tree // another test process unpacked it meanwhile
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "%s not unpacked in %s and %s is not available", name, tree, tool)
		}
	}
	tmp, err := os.MkdirTemp(cache, name+".tmp-")
	if err != nil {
		Missing(t, "%s: %v", cache, err)
	}
	defer os.RemoveAll(tmp)
	debs, unpacked := filepath.Join(tmp, "debs"), filepath.Join(tmp, "root")
	os.Mkdir(debs, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, pkgs...)...)
	dl.Dir = debs
	if out, err := dl.CombinedOutput(); err != nil {
		Missing(t, "apt-get download %s: %v\n%s", strings.Join(pkgs, " "), err, tail(string(out), 2000))
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(files) != len(pkgs) {
		Missing(t, "apt-get download %s gave %d .deb files", strings.Join(pkgs, " "), len(files))
	}
	for _, f := range files {
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", f, unpacked).CombinedOutput(); err != nil {
			Missing(t, "dpkg-deb -x %s: %v\n%s", f, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(unpacked, debTreeMarker), []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(tree)
	if err := os.Rename(unpacked, tree); err != nil {
		t.Fatalf("unpack %s: %v", name, err)
	}
	t.Logf("unpacked %s into %s", strings.Join(pkgs, " "), tree)
	return tree
}
