package daemontest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// Signatures in the private database that StartClamd writes. The official database cannot
// be downloaded here (freshclam needs the internet), and clamd refuses to start without
// one. clamd reports these names with the suffix ".UNOFFICIAL", e.g.
// "Lab.EICAR.NDB.UNOFFICIAL".
const (
	// EICARSignature (.ndb body signature) matches testmsg.EICAR() anywhere, including
	// inside a decoded MIME attachment: what testmsg.Virus() is reported as.
	EICARSignature = "Lab.EICAR.NDB"
	// EICARFileSignature (.hdb, MD5:size) matches only a stream that is exactly the
	// 68-byte EICAR file; a .hdb never matches inside a mail.
	EICARFileSignature = "Lab.EICAR.HDB"
	// PUASignature matches PUATestString anywhere. It is named like ClamAV's "potentially
	// unwanted application" family so that tests can check that the aggregator reclassifies
	// such hits as Suspicious (scoring.DefaultSuspiciousSignatures has "PUA.*").
	PUASignature = "PUA.Lab.TestString"
	// PUATestString is the harmless text that PUASignature detects.
	PUATestString = "FPSAFE-PUA-TEST-STRING"
)

// ClamdOptions tune the clamd that StartClamd runs.
type ClamdOptions struct {
	// StreamMaxLength is clamd's limit on one INSTREAM, in clamd.conf syntax ("1M",
	// "512K"); "" keeps clamd's default, 25M (25 MiB).
	StreamMaxLength string
}

// ClamdDaemon is a running clamd started by StartClamd: a real daemon on 127.0.0.1 and on a
// unix socket, with a private config, database, temp dir and log in Dir.
type ClamdDaemon struct {
	Addr string // "inet:127.0.0.1:PORT", for scoring.Dial and engine configs
	Unix string // "unix:/path/clamd.sock"
	Dir  string // state dir: clamd.conf, db/, tmp/, clamd.log, clamd.pid
	Proc *Process
}

// Clamd starts a fresh clamd with default options; see StartClamd.
func Clamd(t testing.TB) *ClamdDaemon { return StartClamd(t, ClamdOptions{}) }

// StartClamd starts a fresh clamd on a free port and a unix socket, waits until it answers
// PING, and stops it when the test ends. It runs as the current user (root here: no User
// line). Its database holds only the signatures named by the constants above, so it starts
// in well under a second; the wait allows 120 s, as a full official database would need.
// The test is skipped when clamd is not installed (a failure under CI=true).
func StartClamd(t testing.TB, o ClamdOptions) *ClamdDaemon {
	t.Helper()
	bin := Require(t, "clamd")
	dir := StateDir(t)
	writeClamdDatabase(t, filepath.Join(dir, "db"))
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "clamd.sock")
	if len(sock) > 100 { // sun_path holds 108 bytes; long test names make long temp dirs
		short, err := os.MkdirTemp("", "clamd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		sock = filepath.Join(short, "clamd.sock")
	}
	port := FreePort(t)
	conf := []string{
		"Foreground yes",
		"DatabaseDirectory " + filepath.Join(dir, "db"),
		"TemporaryDirectory " + tmp, // INSTREAM data is spooled here
		fmt.Sprintf("TCPSocket %d", port),
		"TCPAddr 127.0.0.1",
		"LocalSocket " + sock,
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"LogTime yes",
	}
	if o.StreamMaxLength != "" {
		conf = append(conf, "StreamMaxLength "+o.StreamMaxLength)
	}
	cfg := WriteFile(t, dir, "clamd.conf", strings.Join(conf, "\n")+"\n")

	c := &ClamdDaemon{
		Addr: fmt.Sprintf("inet:127.0.0.1:%d", port),
		Unix: "unix:" + sock,
		Dir:  dir,
	}
	c.Proc = Start(t, "clamd", exec.Command(bin, "--config-file="+cfg))
	tcp := fmt.Sprintf("127.0.0.1:%d", port)
	WaitTCP(t, c.Proc, tcp, 120*time.Second)
	for _, a := range [][2]string{{"tcp", tcp}, {"unix", sock}} {
		if err := clamdPing(a[0], a[1]); err != nil {
			t.Fatalf("clamd started but does not answer on %s: %v\n%s", a[1], err, tail(c.Proc.Output(), 4000))
		}
	}
	return c
}

// Stop ends clamd now (SIGTERM, then SIGKILL after 5 s): tests use it to see how clients
// behave when the engine dies mid-run. Safe to call twice; the test's cleanup calls it too.
func (c *ClamdDaemon) Stop() { c.Proc.Stop() }

// writeClamdDatabase writes lab.ndb (body signatures) and lab.hdb (whole-file MD5).
func writeClamdDatabase(t testing.TB, dir string) {
	t.Helper()
	eicar := testmsg.EICAR()
	sum := md5.Sum(eicar)
	WriteFile(t, dir, "lab.ndb", fmt.Sprintf("%s:0:*:%s\n%s:0:*:%s\n",
		EICARSignature, hex.EncodeToString(eicar), PUASignature, hex.EncodeToString([]byte(PUATestString))))
	WriteFile(t, dir, "lab.hdb", fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(eicar), EICARFileSignature))
}

// clamdPing sends zPING and expects PONG, within 5 s.
func clamdPing(network, addr string) error {
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if string(buf[:n]) != "PONG\x00" {
		return fmt.Errorf("PING answered %q (%v)", buf[:n], err)
	}
	return nil
}
