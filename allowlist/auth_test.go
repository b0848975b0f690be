package allowlist

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dkimlib "github.com/emersion/go-msgauth/dkim"

	"github.com/fpsafe/fpsafe/internal/dnstest"
	"github.com/fpsafe/fpsafe/internal/mail"
)

// authKeys are generated once: a 2048-bit RSA key takes a while under -race.
var authKeys = sync.OnceValue(func() (k struct {
	gov, evil, strict, nodmarc ed25519.PrivateKey
	govRSA                     *rsa.PrivateKey
}) {
	newEd := func() ed25519.PrivateKey {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return priv
	}
	k.gov, k.evil, k.strict, k.nodmarc = newEd(), newEd(), newEd(), newEd()
	var err error
	if k.govRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	return k
})

// authZone publishes the test world on s:
//   - agency.gov: ed25519 (s=ed) and RSA (s=rsa) keys, SPF allows 192.0.2.10, DMARC
//     p=reject, relaxed; news.agency.gov has no record of its own; mx1.agency.gov is a
//     HELO name with SPF.
//   - evil.example: its own key and SPF (198.51.100.66), no DMARC.
//   - strict.example: DMARC with adkim=s and aspf=s.
//   - nodmarc.example: a key and SPF, no DMARC anywhere.
func authZone(s *dnstest.Server) {
	k := authKeys()
	edKey := func(priv ed25519.PrivateKey) string {
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	}
	der, err := x509.MarshalPKIXPublicKey(&k.govRSA.PublicKey)
	if err != nil {
		panic(err)
	}
	s.TXT("ed._domainkey.agency.gov", edKey(k.gov))
	s.TXT("rsa._domainkey.agency.gov", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	s.TXT("agency.gov", "v=spf1 ip4:192.0.2.10 -all", "google-site-verification=xyz")
	s.TXT("_dmarc.agency.gov", "v=DMARC1; p=reject; rua=mailto:dmarc@agency.gov")
	s.TXT("mx1.agency.gov", "v=spf1 ip4:192.0.2.10 -all")
	s.A("mx1.agency.gov", "192.0.2.10")
	s.TXT("s1._domainkey.evil.example", edKey(k.evil))
	s.TXT("evil.example", "v=spf1 ip4:198.51.100.66 -all")
	s.TXT("ed._domainkey.strict.example", edKey(k.strict))
	s.TXT("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
	s.TXT("ed._domainkey.nodmarc.example", edKey(k.nodmarc))
	s.TXT("nodmarc.example", "v=spf1 mx -all")
	s.MX("nodmarc.example", 10, "mx.nodmarc.example")
	s.A("mx.nodmarc.example", "192.0.2.20")
}

// authNew returns an Authenticator asking s.
func authNew(t *testing.T, s *dnstest.Server, timeout time.Duration) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(AuthConfig{AuthservID: "mx.test.example", Resolver: s.Addr, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// authRaw is a plain message from `from`, CRLF line ends, with a folded Subject.
func authRaw(from string) []byte {
	return []byte("From: Alerts <" + from + ">\r\n" +
		"To: bob@example.net\r\n" +
		"Subject: Quarterly\r\n report  with   folding\r\n" +
		"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@agency.gov>\r\n" +
		"\r\n" +
		"Hello Bob,\r\n\r\nthe report is attached.\r\n")
}

// authSign signs raw for domain/selector; canon is "simple" or "relaxed" (both parts).
func authSign(t *testing.T, raw []byte, domain, selector string, key crypto.Signer, canon dkimlib.Canonicalization) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkimlib.Sign(&out, bytes.NewReader(raw), &dkimlib.SignOptions{
		Domain: domain, Selector: selector, Signer: key,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
		HeaderCanonicalization: canon, BodyCanonicalization: canon,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// authMsg parses raw as `fpsafe check` would and sets the envelope.
func authMsg(t *testing.T, raw []byte, mailFrom, helo, ip string) *mail.Message {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw), mail.NewSpool(t.TempDir(), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	m.Env = mail.Envelope{MailFrom: mailFrom, Helo: helo, Rcpts: []string{"bob@example.net"}}
	if ip != "" {
		m.Env.ClientIP = netip.MustParseAddr(ip)
	}
	return m
}

// authWant is the part of an Identity a case checks; "" fields are not checked.
type authWant struct {
	from       string
	fromFields int
	dkim       []DKIMResult // Domain and Result only
	spf, dmarc Result
	note       string // a substring of one of the notes
}

func authCheck(t *testing.T, id Identity, w authWant) {
	t.Helper()
	if id.From != w.from || id.FromFields != w.fromFields {
		t.Errorf("From = %q in %d fields, want %q in %d", id.From, id.FromFields, w.from, w.fromFields)
	}
	var got []DKIMResult
	for _, d := range id.DKIM {
		got = append(got, DKIMResult{Domain: d.Domain, Result: d.Result})
	}
	if w.dkim != nil && !slices.Equal(got, w.dkim) {
		t.Errorf("DKIM = %+v, want %+v", id.DKIM, w.dkim)
	}
	if w.spf != "" && id.SPF != w.spf {
		t.Errorf("SPF = %s, want %s (notes %q)", id.SPF, w.spf, id.Notes)
	}
	if w.dmarc != "" && id.DMARC != w.dmarc {
		t.Errorf("DMARC = %s, want %s (notes %q)", id.DMARC, w.dmarc, id.Notes)
	}
	if w.note != "" && !slices.ContainsFunc(id.Notes, func(n string) bool { return strings.Contains(n, w.note) }) {
		t.Errorf("notes %q lack %q", id.Notes, w.note)
	}
}

func TestAuthIdentify(t *testing.T) {
	s := dnstest.Start(t)
	authZone(s)
	a := authNew(t, s, 2*time.Second)
	k := authKeys()
	gov := authRaw("alerts@agency.gov")

	bodyChanged := authSign(t, gov, "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed)
	bodyChanged = bytes.Replace(bodyChanged, []byte("attached"), []byte("ATTACHED"), 1)
	twoFroms := append([]byte("From: CEO <ceo@agency.gov>\r\n"), authSign(t, gov, "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed)...)
	bothKeys := authSign(t, authSign(t, gov, "agency.gov", "rsa", k.govRSA, dkimlib.CanonicalizationSimple), "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed)

	cases := []struct {
		name                string
		msg                 *mail.Message
		want                authWant
		wantDKIMReasonMatch string
	}{
		{name: "dkim spf dmarc pass",
			msg: authMsg(t, authSign(t, gov, "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed), "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, dkim: []DKIMResult{{Domain: "agency.gov", Result: Pass}},
				spf: Pass, dmarc: Pass}},
		{name: "rsa and ed25519 signatures",
			msg: authMsg(t, bothKeys, "bounce@agency.gov", "mx1.agency.gov", "203.0.113.9"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1,
				dkim: []DKIMResult{{Domain: "agency.gov", Result: Pass}, {Domain: "agency.gov", Result: Pass}},
				spf:  Fail, dmarc: Pass}},
		{name: "forged From from an unauthorised IP, unsigned",
			msg: authMsg(t, gov, "alerts@agency.gov", "mail.attacker.example", "203.0.113.9"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, dkim: []DKIMResult{},
				spf: Fail, dmarc: Fail, note: "no DKIM or SPF pass"}},
		{name: "signed by another domain",
			msg: authMsg(t, authSign(t, gov, "evil.example", "s1", k.evil, dkimlib.CanonicalizationRelaxed), "x@evil.example", "mail.evil.example", "198.51.100.66"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, dkim: []DKIMResult{{Domain: "evil.example", Result: Pass}},
				spf: Pass, dmarc: Fail, note: "dkim d=evil.example passed but is not aligned"}},
		{name: "body modified after signing",
			msg: authMsg(t, bodyChanged, "bounce@agency.gov", "x.example", "203.0.113.9"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, dkim: []DKIMResult{{Domain: "agency.gov", Result: Fail}},
				spf: Fail, dmarc: Fail}},
		{name: "signed message replayed with a From prepended",
			// go-msgauth picks the bottom-most From, which is the signed one: DKIM passes.
			// Only the From count stops the replay.
			msg: authMsg(t, twoFroms, "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"),
			want: authWant{from: "", fromFields: 2, dkim: []DKIMResult{{Domain: "agency.gov", Result: Pass}},
				spf: Pass, dmarc: PermError, note: "2 From fields: not authenticated"}},
		{name: "signature not covering From",
			msg: authMsg(t, authSignWithoutFrom(t, gov, "agency.gov", "ed", k.gov), "bounce@agency.gov", "x.example", "203.0.113.9"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, dkim: []DKIMResult{{Domain: "agency.gov", Result: PermError}},
				spf: Fail, dmarc: Fail}, wantDKIMReasonMatch: "From field not signed"},
		{name: "subdomain From, organizational record, relaxed alignment",
			msg: authMsg(t, authSign(t, authRaw("alerts@news.agency.gov"), "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed), "bounce@elsewhere.example", "x.example", "203.0.113.9"),
			want: authWant{from: "alerts@news.agency.gov", fromFields: 1, dkim: []DKIMResult{{Domain: "agency.gov", Result: Pass}},
				spf: None, dmarc: Pass}},
		{name: "subdomain From, strict alignment",
			msg: authMsg(t, authSign(t, authRaw("a@news.strict.example"), "strict.example", "ed", k.strict, dkimlib.CanonicalizationRelaxed), "", "", "203.0.113.9"),
			want: authWant{from: "a@news.strict.example", fromFields: 1, dkim: []DKIMResult{{Domain: "strict.example", Result: Pass}},
				spf: None, dmarc: Fail, note: "(strict)"}},
		{name: "null sender: SPF for HELO aligns",
			msg:  authMsg(t, gov, "", "mx1.agency.gov", "192.0.2.10"),
			want: authWant{from: "alerts@agency.gov", fromFields: 1, spf: Pass, dmarc: Pass}},
		{name: "no DMARC record",
			msg: authMsg(t, authSign(t, authRaw("a@nodmarc.example"), "nodmarc.example", "ed", k.nodmarc, dkimlib.CanonicalizationRelaxed), "a@nodmarc.example", "mx.nodmarc.example", "192.0.2.20"),
			want: authWant{from: "a@nodmarc.example", fromFields: 1, dkim: []DKIMResult{{Domain: "nodmarc.example", Result: Pass}},
				spf: Pass, dmarc: None}},
		{name: "no From field",
			msg:  authMsg(t, []byte("Subject: x\r\n\r\nbody\r\n"), "a@agency.gov", "x", ""),
			want: authWant{fromFields: 0, spf: None, dmarc: PermError, note: "no From field"}},
		{name: "From with two addresses",
			msg:  authMsg(t, []byte("From: a@agency.gov, b@evil.example\r\n\r\nbody\r\n"), "a@agency.gov", "x", ""),
			want: authWant{fromFields: 1, dmarc: PermError, note: "2 addresses"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id := a.Identify(ctx, c.msg)
			authCheck(t, id, c.want)
			if c.wantDKIMReasonMatch != "" && (len(id.DKIM) == 0 || !strings.Contains(id.DKIM[0].Reason, c.wantDKIMReasonMatch)) {
				t.Errorf("DKIM = %+v, want reason %q", id.DKIM, c.wantDKIMReasonMatch)
			}
			if id.DMARC != Pass && slices.Contains(id.DKIM, DKIMResult{}) {
				t.Errorf("empty DKIM result in %+v", id.DKIM)
			}
		})
	}
}

// authSignWithoutFrom signs raw by hand with h=to:subject, which dkimlib.Sign refuses to do:
// c=relaxed/simple, ed25519-sha256 (RFC 8463). The signature itself is valid.
func authSignWithoutFrom(t *testing.T, raw []byte, domain, selector string, key ed25519.PrivateKey) []byte {
	t.Helper()
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	relaxed := func(name, value string) string {
		return strings.ToLower(name) + ":" + strings.Join(strings.Fields(value), " ")
	}
	var signed strings.Builder
	for _, want := range []string{"to", "subject"} {
		for f := range strings.SplitSeq(strings.ReplaceAll(string(head), "\r\n ", " "), "\r\n") {
			if name, value, _ := strings.Cut(f, ":"); strings.EqualFold(name, want) {
				signed.WriteString(relaxed(name, value) + "\r\n")
			}
		}
	}
	bh := sha256.Sum256(body) // simple body canonicalization: it ends in one CRLF already
	value := " v=1; a=ed25519-sha256; c=relaxed/simple; d=" + domain + "; s=" + selector +
		"; h=to:subject; bh=" + base64.StdEncoding.EncodeToString(bh[:]) + "; b="
	signed.WriteString(relaxed("DKIM-Signature", value))
	digest := sha256.Sum256([]byte(signed.String()))
	sig := ed25519.Sign(key, digest[:])
	return append([]byte("DKIM-Signature:"+value+base64.StdEncoding.EncodeToString(sig)+"\r\n"), raw...)
}

// TestAuthMilterForm rebuilds the header as the milter sees it: values with the leading
// space (SMFIP_HDR_LEADSPC) and bare LF between folded lines, as Postfix sends them.
func TestAuthMilterForm(t *testing.T) {
	s := dnstest.Start(t)
	authZone(s)
	a := authNew(t, s, 2*time.Second)
	gov := authRaw("alerts@agency.gov")
	for _, canon := range []dkimlib.Canonicalization{dkimlib.CanonicalizationSimple, dkimlib.CanonicalizationRelaxed} {
		signed := authMsg(t, authSign(t, gov, "agency.gov", "ed", authKeys().gov, canon), "", "", "")
		for _, leadSpace := range []bool{true, false} {
			m := &mail.Message{Body: signed.Body, Env: signed.Env}
			for _, f := range signed.Header {
				v := strings.ReplaceAll(f.Value, "\r\n", "\n")
				if !leadSpace {
					v = strings.TrimPrefix(v, " ") // the MTA ate the space after the colon
				}
				m.Header = append(m.Header, mail.Field{Name: f.Name, Value: v})
			}
			want := Pass
			if canon == dkimlib.CanonicalizationSimple && !leadSpace {
				want = Fail // simple needs the exact bytes: negotiate SMFIP_HDR_LEADSPC
			}
			id := a.Identify(context.Background(), m)
			if len(id.DKIM) != 1 || id.DKIM[0].Result != want {
				t.Errorf("c=%s, leading space %v: DKIM = %+v, want %s", canon, leadSpace, id.DKIM, want)
			}
		}
	}
}

// TestAuthDNSFailures: a dead or failing DNS server gives temperror, never a pass and
// never a stuck message.
func TestAuthDNSFailures(t *testing.T) {
	signed := authSign(t, authRaw("alerts@agency.gov"), "agency.gov", "ed", authKeys().gov, dkimlib.CanonicalizationRelaxed)
	tempAll := authWant{from: "alerts@agency.gov", fromFields: 1,
		dkim: []DKIMResult{{Domain: "agency.gov", Result: TempError}}, spf: TempError, dmarc: TempError}

	t.Run("silent server, per-lookup timeout", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		authZone(s)
		s.Silent(".")
		a := authNew(t, s, 300*time.Millisecond)
		id := a.Identify(context.Background(), authMsg(t, signed, "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"))
		authCheck(t, id, tempAll)
	})
	t.Run("silent server, decision deadline", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		authZone(s)
		s.Silent(".")
		a := authNew(t, s, time.Minute) // only the context can end the lookups
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		id := a.Identify(ctx, authMsg(t, signed, "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"))
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Identify took %v with a 1s deadline", d)
		}
		authCheck(t, id, tempAll)
	})
	t.Run("SERVFAIL", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		authZone(s)
		s.ServFail("agency.gov")
		a := authNew(t, s, 2*time.Second)
		id := a.Identify(context.Background(), authMsg(t, signed, "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"))
		authCheck(t, id, tempAll)
	})
	t.Run("deadline already passed", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		authZone(s)
		a := authNew(t, s, 2*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		id := a.Identify(ctx, authMsg(t, signed, "bounce@agency.gov", "mx1.agency.gov", "192.0.2.10"))
		authCheck(t, id, tempAll)
	})
}

func TestAuthConfig(t *testing.T) {
	def := DefaultAuthConfig()
	if err := def.Validate(); err != nil || def.AuthservID == "" || def.Timeout != 2*time.Second {
		t.Fatalf("DefaultAuthConfig() = %+v, Validate: %v", def, err)
	}
	bad := map[string]func(*AuthConfig){
		"empty authserv_id":      func(c *AuthConfig) { c.AuthservID = "" },
		"authserv_id with ;":     func(c *AuthConfig) { c.AuthservID = "mx;dkim=pass" },
		"authserv_id with space": func(c *AuthConfig) { c.AuthservID = "mx example" },
		"resolver without port":  func(c *AuthConfig) { c.Resolver = "127.0.0.1" },
		"zero timeout":           func(c *AuthConfig) { c.Timeout = 0 },
		"huge timeout":           func(c *AuthConfig) { c.Timeout = time.Hour },
	}
	for name, mutate := range bad {
		c := DefaultAuthConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
		if _, err := NewAuthenticator(c); err == nil {
			t.Errorf("%s: NewAuthenticator accepted it", name)
		}
	}
	c := DefaultAuthConfig()
	c.Resolver = "[::1]:5353"
	a, err := NewAuthenticator(c)
	if err != nil || a.AuthservID() != c.AuthservID {
		t.Errorf("NewAuthenticator(%+v) = %v, %v", c, a, err)
	}
}

// authCancelBody cancels the message's context as soon as the verifier starts on the
// body: the deadline strikes while signatures are being hashed.
type authCancelBody struct {
	mail.Body
	cancel context.CancelFunc
}

func (b authCancelBody) Open() (io.ReadCloser, error) {
	r, err := b.Body.Open()
	return io.NopCloser(io.MultiReader(authFuncReader(b.cancel), r)), err
}

// authFuncReader calls f on its first Read and then reports EOF.
type authFuncReader func()

func (f authFuncReader) Read([]byte) (int, error) { f(); return 0, io.EOF }

func TestAuthDeadlineWhileHashing(t *testing.T) {
	s := dnstest.Start(t)
	authZone(s)
	a := authNew(t, s, 2*time.Second)
	k := authKeys()
	raw := authRaw("alerts@agency.gov")
	raw = append(raw, bytes.Repeat([]byte("a long body line to hash, again and again\r\n"), 50000)...)
	raw = authSign(t, authSign(t, raw, "agency.gov", "rsa", k.govRSA, dkimlib.CanonicalizationRelaxed), "agency.gov", "ed", k.gov, dkimlib.CanonicalizationRelaxed)
	for _, sigs := range []int{1, 2} { // go-msgauth has a separate parallel path for 2+
		m := authMsg(t, raw, "bounce@agency.gov", "mx1.agency.gov", "203.0.113.9")
		m.Header = m.Header[2-sigs:]
		body := m.Body
		// the verifier itself: the cut body is a temperror, not a fail
		ctx, cancel := context.WithCancel(context.Background())
		m.Body = authCancelBody{body, cancel}
		out := a.verifyDKIM(ctx, m)
		if len(out.results) != sigs || out.results[0].Result != TempError || out.results[0].Reason != "decision deadline reached" {
			t.Errorf("%d signatures: verifyDKIM = %+v", sigs, out)
		}
		// Identify: it stops waiting at the deadline
		ctx, cancel = context.WithCancel(context.Background())
		m.Body = authCancelBody{body, cancel}
		id := a.Identify(ctx, m)
		if len(id.DKIM) != sigs {
			t.Fatalf("%d signatures: DKIM = %+v", sigs, id.DKIM)
		}
		for _, d := range id.DKIM {
			if d.Result != TempError {
				t.Errorf("%d signatures: DKIM = %+v, want temperror", sigs, id.DKIM)
			}
		}
		if id.DMARC == Pass {
			t.Errorf("DMARC pass after the deadline")
		}
	}
}

func TestAuthTooManySignatures(t *testing.T) {
	s := dnstest.Start(t)
	authZone(s)
	a := authNew(t, s, 2*time.Second)
	raw := authRaw("alerts@agency.gov")
	for range dkimMaxSignatures + 1 {
		raw = authSign(t, raw, "evil.example", "s1", authKeys().evil, dkimlib.CanonicalizationRelaxed)
	}
	id := a.Identify(context.Background(), authMsg(t, raw, "", "", ""))
	if len(id.DKIM) != dkimMaxSignatures {
		t.Errorf("%d DKIM results, want %d", len(id.DKIM), dkimMaxSignatures)
	}
	authCheck(t, id, authWant{from: "alerts@agency.gov", fromFields: 1, dmarc: Fail, note: "only the first 5"})
}
