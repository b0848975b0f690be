package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/dnstest"
	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// defaultSender is the envelope sender of every corpus message unless it names its own.
const defaultSender = "e2e-sender@e2e.test"

// expect is what must become of a corpus message while fpsafe and all engines are up.
type expect int

const (
	expectDelivered   expect = iota // delivered (any verdict but quarantined), never held
	expectClean                     // delivered with verdict clean
	expectHeld                      // held in quarantine, verdict quarantined
	expectAllowlisted               // delivered with verdict allowlisted: never held
)

func (e expect) String() string {
	return [...]string{"delivered", "clean", "held", "allowlisted"}[e]
}

// corpusMsg is one message of the corpus.
type corpusMsg struct {
	Name    string
	Raw     []byte // CRLF line ends
	From    string // envelope sender; "" = defaultSender
	Expect  expect
	Forged  bool   // carries forged X-FPSafe-Verdict (score=-99.0) and X-Spam-Flag: NO
	OnlyMTA string // "postfix": needs what only that MTA offers (SMTPUTF8)
}

func (m corpusMsg) from() string {
	if m.From == "" {
		return defaultSender
	}
	return m.From
}

// Paths of the sample messages Debian ships.
var (
	saSamples = []string{"/usr/share/doc/spamassassin/examples", "/usr/share/doc/spamc"}
	clamTests = "/usr/share/clamav-testfiles"
)

// EnmimePackage holds 53 real-world and malformed MIME messages in its testdata.
const EnmimePackage = "golang-github-jhillyerd-enmime-dev"

// testdataExpect gives the expectation of the testdata/e2e files that are not simply
// "delivered".
var testdataExpect = map[string]expect{
	"ham-plain.eml":             expectClean,
	"multipart-alternative.eml": expectClean,
}

// buildCorpus assembles the corpus for one MTA: built-in messages, testdata/e2e, the
// SpamAssassin and ClamAV samples, the enmime MIME collection, and the allowlist hook.
func buildCorpus(t *testing.T, mta string, clamSig bool) []corpusMsg {
	t.Helper()
	var c []corpusMsg
	var parts []string
	for _, src := range []struct {
		name string
		msgs []corpusMsg
	}{
		{"built-in", builtinCorpus()},
		{"testdata/e2e", testdataCorpus(t)},
		{"Debian samples", debianSamples(t, clamSig)},
		{"enmime", enmimeCorpus(t)},
		{"allowlist", allowlistCorpus(t)},
	} {
		c = append(c, src.msgs...)
		parts = append(parts, fmt.Sprintf("%s %d", src.name, len(src.msgs)))
	}
	t.Logf("corpus for %s: %s", mta, strings.Join(parts, ", "))
	var out []corpusMsg
	for _, m := range c {
		if m.OnlyMTA == "" || m.OnlyMTA == mta {
			out = append(out, m)
		}
	}
	return out
}

// allowlistCorpus is mail from agency.example, an allowlisted sender whose entry requires
// DMARC: DKIM-signed (genuine) copies of ham, GTUBE and EICAR are delivered with verdict
// allowlisted (the last two tagged, never held); unsigned copies from an IP its SPF record
// does not allow (forged) get no bypass and are held like any other spam or virus.
func allowlistCorpus(t *testing.T) []corpusMsg {
	a := allowlisted(t)
	gtube := func(from string) []byte {
		return append([]byte("From: "+from+"\r\n"), bytes.SplitN(testmsg.Spam(), []byte("\r\n"), 2)[1]...)
	}
	ham := func(from string) []byte {
		return append([]byte("From: "+from+"\r\n"), bytes.SplitN(testmsg.Ham(), []byte("\r\n"), 2)[1]...)
	}
	sign := func(raw []byte) []byte { return testmsg.Sign(raw, "agency.example", "s1", a.key) }
	const sender = "filings@agency.example"
	return []corpusMsg{
		{Name: "allowlisted-genuine-ham", Raw: withTestID(sign(ham(sender)), "allowlisted-genuine-ham"), From: sender, Expect: expectAllowlisted},
		{Name: "allowlisted-genuine-gtube", Raw: withTestID(sign(gtube(sender)), "allowlisted-genuine-gtube"), From: sender, Expect: expectAllowlisted},
		{Name: "allowlisted-genuine-eicar", Raw: withTestID(sign(testmsg.From(sender, "Filing", true)), "allowlisted-genuine-eicar"), From: sender, Expect: expectAllowlisted},
		{Name: "allowlisted-forged-gtube", Raw: withTestID(gtube(sender), "allowlisted-forged-gtube"), From: sender, Expect: expectHeld},
		{Name: "allowlisted-forged-eicar", Raw: withTestID(testmsg.From(sender, "Filing", true), "allowlisted-forged-eicar"), From: sender, Expect: expectHeld},
	}
}

// allowlistEnv is the DNS zone and DKIM key shared by every fpsafe of the run, so that
// messages signed once verify whichever fpsafe (and restart) scans them. The allowlist
// itself lives in each MTA run's redis-server (seedAllowlist).
type allowlistEnv struct {
	dns *dnstest.Server
	key testmsg.DKIMKey
}

var (
	allowlistOnce sync.Once
	allowlistVal  *allowlistEnv
)

func allowlisted(t *testing.T) *allowlistEnv {
	allowlistOnce.Do(func() {
		dns, err := dnstest.Listen()
		if err != nil {
			t.Fatalf("dns: %v", err)
		}
		key := testmsg.NewDKIMKey()
		dns.TXT("s1._domainkey.agency.example", key.Record)
		dns.TXT("_dmarc.agency.example", "v=DMARC1; p=reject")
		dns.TXT("agency.example", "v=spf1 -all")
		allowlistVal = &allowlistEnv{dns: dns, key: key}
	})
	if allowlistVal == nil {
		t.Fatal("allowlist environment failed to start")
	}
	return allowlistVal
}

// seedAllowlist starts the MTA run's redis-server and imports the allowlist into it, the
// way a compliance team would (`fpsafe allowlist import`), and returns its URL.
func seedAllowlist(t *testing.T) (*daemontest.Redis, string) {
	r := daemontest.StartRedis(t)
	url := "redis://" + r.Addr + "/0"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := allowlist.NewRedisStore(ctx, allowlist.StoreConfig{Redis: url, Refresh: 30 * time.Second, Prefix: "fpsafe:allowlist"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Import([]allowlist.Entry{{ID: "agency", Match: "domain:agency.example", Require: "dmarc",
		Reason: "regulator correspondence", Owner: "compliance@ourcorp.example", Added: allowlist.NewDate(2026, 1, 1)}}, "e2e", "seed")
	if err != nil {
		t.Fatal(err)
	}
	return r, url
}

// allowlistConfig is appended to fpsafe's config: the allowlist in Redis and the local DNS.
func allowlistConfig(t *testing.T, redisURL string) string {
	a := allowlisted(t)
	return fmt.Sprintf("\n[allowlist]\nredis = %q\nrefresh = \"5s\"\n\n[auth]\nauthserv_id = \"mx.e2e.test\"\nresolver = %q\ntimeout = \"2s\"\n", redisURL, a.dns.Addr)
}

func builtinCorpus() []corpusMsg {
	return []corpusMsg{
		{Name: "testmsg-ham", Raw: withTestID(testmsg.Ham(), "testmsg-ham"), Expect: expectClean},
		{Name: "testmsg-gtube", Raw: withTestID(testmsg.Spam(), "testmsg-gtube"), Expect: expectHeld},
		{Name: "testmsg-eicar", Raw: withTestID(testmsg.Virus(), "testmsg-eicar"), Expect: expectHeld},
		{Name: "testmsg-big-2MiB", Raw: withTestID(testmsg.Big(2<<20), "testmsg-big-2MiB"), Expect: expectDelivered},
		{Name: "generated-deep-nesting", Raw: deepNesting(60), Expect: expectDelivered},
	}
}

// testdataCorpus reads testdata/e2e/*.eml (repository root two levels up).
func testdataCorpus(t *testing.T) []corpusMsg {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "e2e", "*.eml"))
	if len(files) == 0 {
		t.Fatal("no testdata/e2e/*.eml")
	}
	var c []corpusMsg
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		m := corpusMsg{Name: "testdata/" + base, Raw: crlf(raw), Expect: testdataExpect[base]}
		switch {
		case strings.HasPrefix(base, "forged-"):
			m.Forged = true
		case base == "smtputf8-address.eml":
			// RFC 6531: a UTF-8 envelope sender. Sendmail 8.17 as Debian builds it has no
			// EAI support, so this one goes through Postfix only.
			m.From, m.OnlyMTA = "jörg@e2e.test", "postfix"
		}
		c = append(c, m)
	}
	return c
}

// debianSamples: SpamAssassin's GTUBE and ham samples, ClamAV's test mails. clam.exe is
// detected only when the test added its signature to clamd (clamSig).
func debianSamples(t *testing.T, clamSig bool) []corpusMsg {
	t.Helper()
	var c []corpusMsg
	for _, s := range []struct {
		name   string
		expect expect
	}{{"sample-spam.txt", expectHeld}, {"sample-nonspam.txt", expectDelivered}} {
		raw, err := readMaybeGz(saSamples, s.name)
		if err != nil {
			optional(t, "SpamAssassin sample %s: %v", s.name, err)
			continue
		}
		c = append(c, corpusMsg{Name: "spamassassin/" + s.name, Raw: crlf(raw), Expect: s.expect})
	}
	clamExpect := expectDelivered
	if clamSig {
		clamExpect = expectHeld
	}
	for _, name := range []string{"clam.mail", "clam.exe.mbox.base64", "clam.exe.mbox.uu"} {
		raw, err := os.ReadFile(filepath.Join(clamTests, name))
		if err != nil {
			optional(t, "clamav-testfiles: %v", err)
			continue
		}
		c = append(c, corpusMsg{Name: "clamav-testfiles/" + name, Raw: crlf(stripMboxFrom(raw)), Expect: clamExpect})
	}
	return c
}

// enmimeCorpus: the 41 real-world and 12 low-quality MIME samples of enmime's testdata,
// unpacked from the Debian package into the e2e cache (never copied into this repository).
func enmimeCorpus(t *testing.T) []corpusMsg {
	t.Helper()
	root := daemontest.DebTree(t, "enmime", EnmimePackage)
	td := filepath.Join(root, "usr/share/gocode/src/github.com/jhillyerd/enmime/testdata")
	var files []string
	for _, sub := range []string{"mail", "low-quality"} {
		fs, _ := filepath.Glob(filepath.Join(td, sub, "*.raw"))
		files = append(files, fs...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		optional(t, "no enmime testdata in %s", td)
	}
	var c []corpusMsg
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := "enmime/" + filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		c = append(c, corpusMsg{Name: name, Raw: crlf(raw), Expect: expectDelivered})
	}
	return c
}

// optional reports a missing corpus source: fatal under CI=true, logged otherwise.
func optional(t *testing.T, format string, args ...any) {
	t.Helper()
	if daemontest.InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Logf("skipping part of the corpus: "+format, args...)
}

func readMaybeGz(dirs []string, name string) ([]byte, error) {
	var errs []string
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if b, err := os.ReadFile(p); err == nil {
			return b, nil
		}
		f, err := os.Open(p + ".gz")
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s.gz: %w", p, err)
		}
		return io.ReadAll(io.LimitReader(zr, 16<<20))
	}
	return nil, fmt.Errorf("not found: %s", strings.Join(errs, "; "))
}

// stripMboxFrom drops an mbox "From " separator line: it is no header, and an MTA would
// take it as the start of the body.
func stripMboxFrom(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}

// crlf normalises line ends to CRLF (bare CRs are left alone).
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// withTestID puts an X-Test-ID field on top of a generated message, for people reading the
// sink or the queue (the ledger matches on the envelope recipient).
func withTestID(raw []byte, id string) []byte {
	return append([]byte("X-Test-ID: "+id+"\r\n"), raw...)
}

// deepNesting builds a message with n nested multipart/mixed levels around a text part.
func deepNesting(n int) []byte {
	var b strings.Builder
	b.WriteString("X-Test-ID: generated-deep-nesting\nFrom: Judy Example <judy@example.org>\nTo: ivan@example.net\n" +
		"Subject: Deeply nested multipart\nDate: Thu, 5 Nov 2026 11:00:00 +0100\nMessage-ID: <e2e-deep@example.org>\nMIME-Version: 1.0\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"level-%d\"\n\n--level-%d\n", i, i)
	}
	b.WriteString("Content-Type: text/plain; charset=us-ascii\n\nThe innermost part.\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--level-%d--\n", i)
	}
	return crlf([]byte(b.String()))
}
