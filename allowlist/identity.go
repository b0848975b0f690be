// Package allowlist answers two questions: who sent this message, provably (Identity:
// DKIM, SPF, DMARC, client IP), and is that proven identity allowlisted (List.Lookup).
// An entry names the authentication it requires, so a forged From: never rides it.
package allowlist

import "net/netip"

// Result is an authentication method's result, with the values of RFC 8601.
type Result string

// Authentication results.
const (
	None      Result = "none"
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	Neutral   Result = "neutral"
	TempError Result = "temperror" // DNS failed or timed out: not authenticated, never stuck
	PermError Result = "permerror"
)

// DKIMResult is one DKIM signature's verification.
type DKIMResult struct {
	Domain string `json:"domain"` // d=
	Result Result `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// Identity is what fpsafe could prove about a message's sender.
type Identity struct {
	From       string       `json:"from,omitempty"`        // the header From address, when there is exactly one
	FromDomain string       `json:"from_domain,omitempty"` // its domain
	FromFields int          `json:"from_fields"`           // number of From: fields; only 1 can authenticate
	MailFrom   string       `json:"mail_from"`
	Helo       string       `json:"helo,omitempty"`
	ClientIP   netip.Addr   `json:"client_ip,omitzero"`
	DKIM       []DKIMResult `json:"dkim,omitempty"`
	SPF        Result       `json:"spf,omitempty"`
	DMARC      Result       `json:"dmarc,omitempty"`
	Notes      []string     `json:"notes,omitempty"` // why something did not authenticate
}

// Match is the allowlist's answer for one message: which entry claimed it and whether the
// authentication that entry requires was proven. Only an Authenticated match bypasses
// quarantine; an unauthenticated one is reported, so that a spoof is visible.
type Match struct {
	Entry         string `json:"entry"`
	Matched       string `json:"matched"` // what matched, e.g. "domain sec.gov"
	Require       string `json:"require"`
	Authenticated bool   `json:"authenticated"`
	Why           string `json:"why"` // e.g. "dmarc=pass" or "dmarc=fail"
}
