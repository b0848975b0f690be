package allowlist

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"
)

// authResolver is the DNS client of DKIM, SPF and DMARC: every lookup goes to one
// server, is bounded by the caller's context and by a per-lookup timeout, and fails
// with a *net.DNSError that says whether the failure is temporary. Both libraries turn
// only such errors into temperror; anything else would become a permanent error, and a
// DNS outage must never look like a forgery.
type authResolver struct {
	r       *net.Resolver
	timeout time.Duration
}

// newAuthResolver asks server (HOST:PORT), or the system resolver when server is "".
func newAuthResolver(server string, timeout time.Duration) *authResolver {
	r := &net.Resolver{}
	if server != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	return &authResolver{r: r, timeout: timeout}
}

// LookupTXT implements spf.DNSResolver; the DKIM and DMARC lookups use it too.
func (r *authResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	txt, err := r.r.LookupTXT(ctx, authRooted(name))
	return txt, authDNSError(ctx, name, err)
}

// LookupMX implements spf.DNSResolver.
func (r *authResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	mx, err := r.r.LookupMX(ctx, authRooted(name))
	return mx, authDNSError(ctx, name, err)
}

// LookupIPAddr implements spf.DNSResolver.
func (r *authResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ips, err := r.r.LookupIPAddr(ctx, authRooted(host))
	return ips, authDNSError(ctx, host, err)
}

// LookupAddr implements spf.DNSResolver (the ptr mechanism).
func (r *authResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	names, err := r.r.LookupAddr(ctx, addr)
	return names, authDNSError(ctx, addr, err)
}

// lookupTXT is the LookupTXT hook of go-msgauth, which has no context: ctx is the
// message's.
func (r *authResolver) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
}

// authRooted makes name absolute, so that the resolver never appends the host's search
// domains (a name that does not exist would otherwise cost one query per domain).
func authRooted(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// authDNSError keeps "no such name" and "no such record" (a definite answer: SPF none,
// no DMARC policy, no DKIM key) and turns every other failure into a temporary
// *net.DNSError: a timeout, SERVFAIL, a refused or malformed answer, a cancelled context.
func authDNSError(ctx context.Context, name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return &net.DNSError{Err: de.Err, Name: name, Server: de.Server, IsNotFound: true}
	}
	out := &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
	if de != nil {
		out.Err, out.Server, out.IsTimeout = de.Err, de.Server, de.IsTimeout
	}
	if ctx.Err() != nil {
		out.IsTimeout = true
	}
	return out
}
