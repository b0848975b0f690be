package allowlist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	dkimlib "github.com/emersion/go-msgauth/dkim"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// dkimMaxSignatures bounds the signatures verified per message: each costs a DNS lookup
// and a pass over the body. Signatures beyond it are not verified, so they cannot pass.
const dkimMaxSignatures = 5

// dkimOutcome is what verifyDKIM found.
type dkimOutcome struct {
	results []DKIMResult
	note    string
}

// verifyDKIM verifies every DKIM-Signature of m (up to dkimMaxSignatures). go-msgauth
// refuses a signature whose h= does not list From, rsa-sha1, RSA keys under 1024 bits
// and the l= tag; such signatures are never a pass.
func (a *Authenticator) verifyDKIM(ctx context.Context, m *mail.Message) dkimOutcome {
	r, err := m.Open()
	if err != nil {
		return dkimOutcome{results: dkimTimedOut(m), note: "dkim: " + err.Error()}
	}
	defer r.Close()
	verifs, err := dkimlib.VerifyWithOptions(&dkimCtxReader{ctx: ctx, r: r}, &dkimlib.VerifyOptions{
		LookupTXT:        a.dns.lookupTXT(ctx),
		MaxVerifications: dkimMaxSignatures,
	})
	var out dkimOutcome
	switch {
	case errors.Is(err, dkimlib.ErrTooManySignatures):
		out.note = fmt.Sprintf("dkim: only the first %d signatures verified", dkimMaxSignatures)
	case err != nil:
		return dkimOutcome{results: dkimTimedOut(m), note: "dkim: " + err.Error()}
	}
	for _, v := range verifs {
		out.results = append(out.results, dkimResult(ctx, v))
	}
	return out
}

// dkimResult maps one verification to its RFC 8601 result.
func dkimResult(ctx context.Context, v *dkimlib.Verification) DKIMResult {
	res := DKIMResult{Domain: authDomain(v.Domain), Result: Pass}
	switch {
	case v.Err == nil:
		return res
	case ctx.Err() != nil:
		// the body was cut short at the deadline (see dkimCtxReader): not a real failure
		res.Result, res.Reason = TempError, "decision deadline reached"
		return res
	case dkimlib.IsTempFail(v.Err):
		res.Result = TempError
	case dkimlib.IsPermFail(v.Err):
		res.Result = PermError
	default:
		res.Result = Fail
	}
	res.Reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
	return res
}

// dkimTimedOut describes the signatures of m as temperror, for when verification could
// not run or finish: the domains come from the d= tags, unverified.
func dkimTimedOut(m *mail.Message) []DKIMResult {
	var out []DKIMResult
	for _, f := range m.Header {
		if !strings.EqualFold(f.Name, "DKIM-Signature") || len(out) == dkimMaxSignatures {
			continue
		}
		res := DKIMResult{Result: TempError, Reason: "not verified"}
		for tag := range strings.SplitSeq(f.Value, ";") {
			k, v, _ := strings.Cut(tag, "=")
			if strings.TrimSpace(k) == "d" {
				res.Domain = authDomain(strings.Join(strings.Fields(v), ""))
			}
		}
		out = append(out, res)
	}
	return out
}

// dkimCtxReader ends the message early, with io.EOF, once ctx is done, so that hashing a
// huge body stops at the deadline. It must not return an error instead: with several
// signatures go-msgauth then returns without closing the pipes its verifying goroutines
// read from, and they leak. A cut body fails its hash; dkimResult reports temperror.
type dkimCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *dkimCtxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, io.EOF
	}
	return c.r.Read(p)
}

// authDomain normalises a domain for comparison: lower case, no trailing dot.
func authDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}
