package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// AuthConfig configures the Authenticator: the [auth] section of the configuration.
type AuthConfig struct {
	// Enabled authenticates every message (DKIM, SPF, DMARC) and writes an
	// Authentication-Results field even without an allowlist. With an allowlist
	// configured, authentication is always on: the allowlist depends on it.
	Enabled bool `toml:"enabled"`
	// AuthservID names this host in the Authentication-Results fields fpsafe writes.
	// Incoming fields with the same id are forgeries and must be removed.
	AuthservID string `toml:"authserv_id"`
	// Resolver is the DNS server to ask, as HOST:PORT; "" uses the system resolver.
	// A local validating resolver is the best choice.
	Resolver string `toml:"resolver"`
	// Timeout bounds each DNS lookup; the message's decision deadline bounds them all.
	Timeout time.Duration `toml:"timeout"`
}

// DefaultAuthConfig returns the defaults: the host name as authserv-id ("fpsafe" when it
// is unknown), the system resolver and 2 s per lookup.
func DefaultAuthConfig() AuthConfig {
	id, err := os.Hostname()
	if err != nil || validAuthservID(id) != nil {
		id = "fpsafe"
	}
	return AuthConfig{AuthservID: id, Timeout: 2 * time.Second}
}

// Validate reports the first problem in c.
func (c AuthConfig) Validate() error {
	if err := validAuthservID(c.AuthservID); err != nil {
		return fmt.Errorf("auth: authserv_id %q: %w", c.AuthservID, err)
	}
	if c.Resolver != "" {
		host, port, err := net.SplitHostPort(c.Resolver)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("auth: resolver %q: want HOST:PORT, e.g. 127.0.0.1:53", c.Resolver)
		}
	}
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		return fmt.Errorf("auth: timeout %v: want more than 0 and at most 1m", c.Timeout)
	}
	return nil
}

// validAuthservID accepts what RFC 8601 allows unquoted: a non-empty token, in practice
// a host name.
func validAuthservID(id string) error {
	if id == "" {
		return errors.New("empty")
	}
	for _, c := range id {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, c) {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

// Authenticator establishes who sent a message, provably: DKIM signatures, SPF for the
// envelope sender and DMARC for the header From. It implements policy.Identifier and is
// safe for concurrent use.
type Authenticator struct {
	cfg AuthConfig
	dns *authResolver
}

// NewAuthenticator checks cfg and returns an Authenticator that uses it.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Authenticator{cfg: cfg, dns: newAuthResolver(cfg.Resolver, cfg.Timeout)}, nil
}

// AuthservID is the id that starts the Authentication-Results fields fpsafe writes.
func (a *Authenticator) AuthservID() string { return a.cfg.AuthservID }

// Identify checks DKIM, SPF and DMARC for m, concurrently. It never fails and returns by
// ctx's deadline: a DNS failure, a timeout or a deadline leaves a temperror in the
// Identity, and any result that is not a pass never authenticates anyone.
func (a *Authenticator) Identify(ctx context.Context, m *mail.Message) Identity {
	id := Identity{MailFrom: m.Env.MailFrom, Helo: m.Env.Helo, ClientIP: m.Env.ClientIP}
	authFrom(m, &id)
	env, from := id, id.FromDomain // copies for the goroutines: id is written below

	dkimc := authAsync(func() dkimOutcome { return a.verifyDKIM(ctx, m) },
		func(p any) dkimOutcome {
			return dkimOutcome{results: dkimTimedOut(m), note: fmt.Sprintf("dkim: internal error: %v", p)}
		})
	spfc := authAsync(func() spfOutcome { return a.checkSPF(ctx, env) },
		func(p any) spfOutcome { return spfOutcome{PermError, fmt.Sprintf("spf: internal error: %v", p)} })
	recc := authAsync(func() dmarcRecord { return a.lookupDMARC(ctx, from) },
		func(p any) dmarcRecord { return dmarcRecord{err: fmt.Errorf("internal error: %v", p)} })

	d, ok := authAwait(ctx, dkimc)
	if !ok {
		d = dkimOutcome{results: dkimTimedOut(m), note: "dkim: decision deadline reached"}
	}
	id.DKIM = d.results
	s, ok := authAwait(ctx, spfc)
	if !ok {
		s = spfOutcome{TempError, "spf: decision deadline reached"}
	}
	id.SPF = s.result
	rec, ok := authAwait(ctx, recc)
	if !ok {
		rec = dmarcRecord{err: fmt.Errorf("%w: decision deadline reached", errDMARCTemp)}
	}
	var dmarcNote string
	id.DMARC, dmarcNote = evaluateDMARC(id, rec)
	for _, n := range []string{d.note, s.note, dmarcNote} {
		if n != "" {
			id.Notes = append(id.Notes, n)
		}
	}
	return id
}

// authFrom fills the From fields of id. Only one From field holding one address can be
// authenticated: with two, a mail reader may show the one nobody signed.
func authFrom(m *mail.Message, id *Identity) {
	for _, f := range m.Header {
		// "From :" counts too: some parsers accept white space before the colon
		if strings.EqualFold(strings.TrimRight(f.Name, " \t"), "From") {
			id.FromFields++
		}
	}
	addrs, fields, ok := mail.FromAddresses(m)
	var note string
	switch {
	case id.FromFields == 0:
		note = "no From field: not authenticated"
	case id.FromFields > 1:
		note = fmt.Sprintf("%d From fields: not authenticated", id.FromFields)
	case fields != 1:
		note = "From field name has white space before the colon: not authenticated"
	case !ok || len(addrs) == 0:
		note = "From field unparseable: not authenticated"
	case len(addrs) > 1:
		note = fmt.Sprintf("From field holds %d addresses: not authenticated", len(addrs))
	case mail.AddressDomain(addrs[0]) == "":
		note = "From address has no domain: not authenticated"
	default:
		id.From, id.FromDomain = addrs[0], mail.AddressDomain(addrs[0])
		return
	}
	id.Notes = append(id.Notes, note)
}

// SPFDomain is the domain whose SPF record was checked: the MAIL FROM domain, or the HELO
// name when MAIL FROM is null (RFC 7208 section 2.4), lower-cased.
func (id Identity) SPFDomain() string {
	if id.MailFrom != "" {
		return mail.AddressDomain(id.MailFrom)
	}
	return strings.ToLower(strings.TrimSuffix(id.Helo, "."))
}

// authAsync runs f in a goroutine and delivers its value, or onPanic's value if f panics:
// a panic in a goroutine would otherwise take the whole daemon down.
func authAsync[T any](f func() T, onPanic func(any) T) <-chan T {
	c := make(chan T, 1) // buffered: a late result never blocks the goroutine
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c <- onPanic(p)
			}
		}()
		c <- f()
	}()
	return c
}

// authAwait waits for c's value until ctx is done. A value already there wins over a
// deadline that has passed meanwhile.
func authAwait[T any](ctx context.Context, c <-chan T) (T, bool) {
	select {
	case v := <-c:
		return v, true
	default:
	}
	select {
	case v := <-c:
		return v, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}
