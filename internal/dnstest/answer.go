package dnstest

import (
	"net"
	"strings"

	"github.com/miekg/dns"
)

// handle answers one query, or ignores it for a silent name.
func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) {
	s.mu.Lock()
	s.queries++
	resp := s.answer(req)
	s.mu.Unlock()
	if resp == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
			resp.SetEdns0(uint16(size), false)
		}
		resp.Truncate(size) // sets TC when needed: the client retries over TCP
	}
	w.WriteMsg(resp) //nolint:errcheck // the client may be gone; nothing to do
}

// answer builds the reply to req from the records, or returns nil to stay silent.
// The caller holds s.mu.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative, m.RecursionAvailable, m.Compress = true, true, true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case under(s.silent, name):
		return nil
	case under(s.servfail, name):
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	for _, rr := range s.records[name] {
		if rr.Header().Rrtype == q.Qtype {
			rr = dns.Copy(rr)
			rr.Header().Name = q.Name // answer in the case the client asked (0x20)
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 && !s.exists(name) {
		m.Rcode = dns.RcodeNameError
	}
	return m
}

// exists reports whether name owns records or has names below it (an empty
// non-terminal): such a name answers NOERROR with no data rather than NXDOMAIN.
func (s *Server) exists(name string) bool {
	for owner := range s.records {
		if owner == name || strings.HasSuffix(owner, "."+name) {
			return true
		}
	}
	return false
}
