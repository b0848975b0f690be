package daemontest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cicapModules is where Debian's c-icap and libc-icap-mod-virus-scan put their modules.
const cicapModules = "/usr/lib/x86_64-linux-gnu/c_icap"

// CICAPService is the service path that StartCICAP configures: an alias of c-icap's
// virus_scan service whose arguments make it scan every message in full and answer 204
// when it is clean (force=on: scan whatever the file type; sizelimit=off: no
// MaxObjectSize pass-through; mode=simple: no early partial answer).
const CICAPService = "/fpsafe"

// CICAP is a running c-icap started by StartCICAP: Debian's ICAP server with the
// virus_scan service, which hands each object to a clamd through clamd_mod.
type CICAP struct {
	Addr    string // "inet:127.0.0.1:PORT", for engine configs with a service key
	URL     string // "icap://127.0.0.1:PORT/fpsafe": the whole engine address
	Service string // CICAPService
	Dir     string // c-icap.conf, tmp/, server.log, access.log, c-icap.pid
	Proc    *Process
}

// StartCICAP starts c-icap in the foreground (-N) on a free port on 127.0.0.1, with its
// config, temp files and logs in a temp dir, scanning with clamd's TCP socket, and waits
// until it answers OPTIONS for the service. It is stopped (by PID, with its children) when
// the test ends. Without c-icap or its virus_scan module the test is skipped (a failure
// under CI=true; scripts/install-icap.sh installs them).
func StartCICAP(t testing.TB, clamd *ClamdDaemon) *CICAP {
	t.Helper()
	bin := Require(t, "c-icap")
	for _, so := range []string{"virus_scan.so", "clamd_mod.so"} {
		if _, err := os.Stat(filepath.Join(cicapModules, so)); err != nil {
			Missing(t, "c-icap module %s missing (run scripts/install-icap.sh as root): %v", so, err)
		}
	}
	clamdHost, clamdPort, err := net.SplitHostPort(strings.TrimPrefix(clamd.Addr, "inet:"))
	if err != nil {
		t.Fatalf("clamd address %q: %v", clamd.Addr, err)
	}
	dir := StateDir(t)
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "c-icap.ctl")
	if len(ctl) > 100 { // sun_path holds 108 bytes
		short, err := os.MkdirTemp("", "cicap")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		ctl = filepath.Join(short, "c-icap.ctl")
	}
	port := FreePort(t)
	conf := []string{
		"PidFile " + filepath.Join(dir, "c-icap.pid"),
		"CommandsSocket " + ctl,
		"Timeout 60",
		"MaxKeepAliveRequests 100",
		"KeepAliveTimeout 600",
		"StartServers 1",
		"MaxServers 2",
		"MinSpareThreads 5",
		"MaxSpareThreads 20",
		"ThreadsPerChild 20",
		"MaxRequestsPerChild 0",
		fmt.Sprintf("Port 127.0.0.1:%d", port),
		"ServerAdmin root@localhost",
		"ServerName fpsafe-test",
		"TmpDir " + tmp,
		"MaxMemObject 131072",
		"DebugLevel 1",
		"Pipelining on",
		"ModulesDir " + cicapModules,
		"ServicesDir " + cicapModules,
		"TemplateDir /usr/share/c_icap/templates/",
		"TemplateDefaultLanguage en",
		"LoadMagicFile /etc/c-icap/c-icap.magic",
		"ServerLog " + filepath.Join(dir, "server.log"),
		"AccessLog " + filepath.Join(dir, "access.log"),
		// The antivirus service, then its engine, as Debian's virus_scan.conf orders them.
		"Service antivirus_module virus_scan.so",
		"ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple",
		"ServiceAlias " + strings.TrimPrefix(CICAPService, "/") + " virus_scan?allow204=on&force=on&sizelimit=off&mode=simple",
		"virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE",
		"virus_scan.SendPercentData 0",
		"virus_scan.StartSendPercentDataAfter 0",
		"virus_scan.MaxObjectSize 64M",
		"virus_scan.PassOnError off",
		"Module common clamd_mod.so",
		"clamd_mod.ClamdHost " + clamdHost,
		"clamd_mod.ClamdPort " + clamdPort,
		"virus_scan.DefaultEngine clamd",
	}
	cfg := WriteFile(t, dir, "c-icap.conf", strings.Join(conf, "\n")+"\n")
	c := &CICAP{
		Addr:    fmt.Sprintf("inet:127.0.0.1:%d", port),
		URL:     fmt.Sprintf("icap://127.0.0.1:%d%s", port, CICAPService),
		Service: CICAPService,
		Dir:     dir,
	}
	c.Proc = Start(t, "c-icap", exec.Command(bin, "-N", "-f", cfg))
	hostport := fmt.Sprintf("127.0.0.1:%d", port)
	WaitTCP(t, c.Proc, hostport, 60*time.Second)
	// Listening comes before the children have loaded the service: wait for a real answer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, err := cicapOptions(hostport, CICAPService)
		if err == nil && status == "ICAP/1.0 200 OK" {
			break
		}
		if time.Now().After(deadline) || c.Proc.Exited() {
			t.Fatalf("c-icap on %s: OPTIONS %s answered %q, %v\n%s\n%s", hostport, CICAPService, status, err,
				tail(c.Proc.Output(), 2000), tail(c.Log(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("c-icap server.log:\n%s", tail(c.Log(), 4000))
		}
	})
	return c
}

// Stop ends c-icap and its children now (SIGTERM to the process group, SIGKILL after 5 s).
// Safe to call twice; the test's cleanup calls it too.
func (c *CICAP) Stop() { c.Proc.Stop() }

// Log returns c-icap's server log so far.
func (c *CICAP) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return string(b)
}

// cicapOptions sends an OPTIONS request and returns the status line of the answer.
func cicapOptions(hostport, service string) (string, error) {
	conn, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := fmt.Sprintf("OPTIONS icap://%s%s ICAP/1.0\r\nHost: %s\r\nEncapsulated: null-body=0\r\n\r\n", hostport, service, hostport)
	if _, err := conn.Write([]byte(req)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	if n == 0 {
		return "", err
	}
	return line, nil
}
