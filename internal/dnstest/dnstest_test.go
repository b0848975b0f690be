package dnstest

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// resolver sends every query to s, whatever the system configuration says.
func resolver(s *Server) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr)
	}}
}

func TestRecords(t *testing.T) {
	s := Start(t)
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 2000) // > 1232 bytes: TC, then TCP
	s.TXT("Sel._domainkey.Example.org", long)
	s.TXT("example.org", "v=spf1 -all", "other")
	s.A("mail.example.org", "192.0.2.1")
	s.AAAA("mail.example.org", "2001:db8::1")
	s.MX("example.org", 10, "mail.example.org")
	r := resolver(s)
	ctx := context.Background()

	if txt, err := r.LookupTXT(ctx, "sel._domainkey.example.org."); err != nil || len(txt) != 1 || txt[0] != long {
		t.Errorf("long TXT: %d records, err %v", len(txt), err)
	}
	if txt, err := r.LookupTXT(ctx, "example.org."); err != nil || len(txt) != 2 {
		t.Errorf("TXT = %q, %v", txt, err)
	}
	if ips, err := r.LookupIPAddr(ctx, "mail.example.org."); err != nil || len(ips) != 2 {
		t.Errorf("IPs = %v, %v", ips, err)
	}
	if mx, err := r.LookupMX(ctx, "example.org."); err != nil || len(mx) != 1 || mx[0].Host != "mail.example.org." {
		t.Errorf("MX = %v, %v", mx, err)
	}
	for _, name := range []string{"nx.example.org.", "mail.example.org.", "_domainkey.example.org."} {
		_, err := r.LookupTXT(ctx, name) // NXDOMAIN, no TXT at the name, empty non-terminal
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("%s: err = %#v, want not found", name, err)
		}
	}
	if s.Queries() == 0 {
		t.Error("no queries counted")
	}
}

func TestFailures(t *testing.T) {
	s := Start(t)
	s.TXT("ok.example", "fine")
	s.TXT("a.broken.example", "never served")
	s.ServFail("broken.example")
	s.Silent("dead.example")
	r := resolver(s)

	_, err := r.LookupTXT(context.Background(), "a.broken.example.")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.Temporary() {
		t.Errorf("SERVFAIL: err = %#v, want a temporary DNSError", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = r.LookupTXT(ctx, "x.dead.example.")
	if !errors.As(err, &de) || !de.IsTimeout {
		t.Errorf("silent: err = %#v, want a timeout", err)
	}
	if txt, err := r.LookupTXT(context.Background(), "ok.example."); err != nil || txt[0] != "fine" {
		t.Errorf("other names must still answer: %q, %v", txt, err)
	}
	s.Silent(".")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := r.LookupTXT(ctx2, "ok.example."); !errors.As(err, &de) || !de.IsTimeout {
		t.Errorf(`Silent("."): err = %#v, want a timeout`, err)
	}
	s.Close()
	s.Close()
}
