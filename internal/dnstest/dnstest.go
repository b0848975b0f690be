// Package dnstest runs a tiny authoritative DNS server for tests, like net/http/httptest
// does for HTTP: on 127.0.0.1, on a random port that answers both UDP and TCP, serving
// TXT, A, AAAA and MX records from a map. It can also fail on purpose. For chosen names it
// answers SERVFAIL, or it stays silent so that the client times out. Tests of DKIM, SPF
// and DMARC use it to publish keys and policies without touching the real DNS.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. Its methods are safe for concurrent use, also
// while it is answering queries.
type Server struct {
	// Addr is "127.0.0.1:PORT"; the same port serves UDP and TCP.
	Addr string

	udp, tcp *dns.Server

	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool     // FQDNs whose subtree answers SERVFAIL
	silent   map[string]bool     // FQDNs whose subtree gets no answer
	queries  int
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Listen()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen starts a server on a free port of 127.0.0.1. The caller must Close it.
func Listen() (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}, servfail: map[string]bool{}, silent: map[string]bool{}}
	var err error
	for range 20 { // the UDP port may be taken for TCP by someone else: try another
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			continue
		}
		s.Addr = pc.LocalAddr().String()
		s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.handle)}
		s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.handle)}
		s.serve(s.udp)
		s.serve(s.tcp)
		return s, nil
	}
	return nil, fmt.Errorf("no free UDP+TCP port pair: %w", err)
}

// serve runs srv and returns once it is ready to answer.
func (s *Server) serve(srv *dns.Server) {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe() //nolint:errcheck // the error after Shutdown is expected
	<-started
}

// Close stops the server. It is safe to call more than once.
func (s *Server) Close() {
	s.udp.Shutdown() //nolint:errcheck // "server not started" on a second call
	s.tcp.Shutdown() //nolint:errcheck
}

// TXT publishes TXT records at name, one per value. Values longer than 255 bytes are
// split into several strings of one record, as a DKIM key must be; resolvers join them.
func (s *Server) TXT(name string, values ...string) {
	for _, v := range values {
		var parts []string
		for len(v) > 255 {
			parts, v = append(parts, v[:255]), v[255:]
		}
		s.add(&dns.TXT{Hdr: s.hdr(name, dns.TypeTXT), Txt: append(parts, v)})
	}
}

// A publishes A records; addrs are IPv4 addresses such as "192.0.2.1".
func (s *Server) A(name string, addrs ...string) {
	for _, a := range addrs {
		s.add(&dns.A{Hdr: s.hdr(name, dns.TypeA), A: net.IP(netip.MustParseAddr(a).AsSlice())})
	}
}

// AAAA publishes AAAA records; addrs are IPv6 addresses such as "2001:db8::1".
func (s *Server) AAAA(name string, addrs ...string) {
	for _, a := range addrs {
		s.add(&dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: net.IP(netip.MustParseAddr(a).AsSlice())})
	}
}

// MX publishes an MX record pointing at host.
func (s *Server) MX(name string, pref uint16, host string) {
	s.add(&dns.MX{Hdr: s.hdr(name, dns.TypeMX), Preference: pref, Mx: fqdn(host)})
}

// ServFail makes every query for name, or for any name below it, answer SERVFAIL.
// "." means every name.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[fqdn(name)] = true
}

// Silent makes the server ignore every query for name, or for any name below it, as a
// dead or firewalled server would, so that clients time out. "." means every name.
func (s *Server) Silent(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[fqdn(name)] = true
}

// Queries is the number of queries received so far, silent ones included.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: 60}
}

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[rr.Header().Name] = append(s.records[rr.Header().Name], rr)
}

// fqdn returns name lower-cased and fully qualified, the form records are kept in.
func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// under reports whether name is zone or a name below it, for any zone in set.
func under(set map[string]bool, name string) bool {
	for zone := range set {
		if zone == "." || name == zone || strings.HasSuffix(name, "."+zone) {
			return true
		}
	}
	return false
}
