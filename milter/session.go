package milter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"strings"
	"time"

	"github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
)

// maxHeaderBytes bounds the header text kept per message; beyond it only field names are
// kept (for stripping forged fields) and the message is decided as unscanned.
const maxHeaderBytes = mail.MaxHeaderBytes

// session is one MTA connection. go-milter calls it sequentially, so it needs no locks.
// Connection facts survive across messages; message state is reset at MAIL FROM and ABORT
// (go-milter keeps its header map across messages when the MTA sends no ABORT).
type session struct {
	srv *Server
	ack milter.Response // the answer to every event before end-of-message: CONTINUE, or none (fast protocol)

	// connection
	clientIP   netip.Addr
	clientName string
	helo       string

	// message
	msg         *mail.Message
	spool       *mail.Spool
	headerBytes int
	failure     string // why the message cannot be scanned, e.g. a spool write error
}

func newSession(s *Server) *session {
	ses := &session{srv: s, ack: milter.RespContinue}
	if s.cfg.FastProtocol {
		ses.ack = nil // the MTA was told not to wait for these replies
	}
	return ses
}

// Every callback answers CONTINUE and swallows its errors: an error returned to go-milter
// closes the connection, and the MTA would then apply its default action.

func (s *session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("connect", &resp, s.ack)
	s.clientName = host
	if ip, ok := netip.AddrFromSlice(addr); ok {
		s.clientIP = ip.Unmap()
	}
	return s.ack, nil
}

func (s *session) Helo(name string, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("helo", &resp, s.ack)
	s.helo = name
	return s.ack, nil
}

func (s *session) MailFrom(from string, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("mail", &resp, s.ack)
	s.reset()
	s.srv.inFlight.Add(1)
	s.spool = mail.NewSpool(s.srv.spool, int64(s.srv.cfg.SpoolMemory)).WithBudget(s.srv.budget)
	s.msg = &mail.Message{Env: mail.Envelope{
		MailFrom: strings.Trim(from, "<>"), ClientIP: s.clientIP, ClientName: s.clientName, Helo: s.helo,
	}}
	s.macros(m)
	return s.ack, nil
}

func (s *session) RcptTo(rcpt string, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("rcpt", &resp, s.ack)
	if s.msg != nil {
		s.msg.Env.Rcpts = append(s.msg.Env.Rcpts, strings.Trim(rcpt, "<>"))
		s.macros(m)
	}
	return s.ack, nil
}

func (s *session) Header(name, value string, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("header", &resp, milter.RespContinue) // headers are always answered: see NoReplies
	if s.msg == nil {
		return milter.RespContinue, nil
	}
	s.headerBytes += len(name) + len(value) + 3
	if s.headerBytes > maxHeaderBytes {
		value = ""
		s.failure = fmt.Sprintf("header section above %d bytes", maxHeaderBytes)
	}
	s.msg.Header = append(s.msg.Header, mail.Field{Name: name, Value: value})
	return milter.RespContinue, nil
}

func (s *session) Headers(_ textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return s.ack, nil
}

func (s *session) BodyChunk(chunk []byte, m *milter.Modifier) (resp milter.Response, err error) {
	defer s.guard("body", &resp, s.ack)
	if s.spool != nil && s.failure == "" {
		s.srv.spoolBytes.Add(int64(len(chunk)))
		if _, err := s.spool.Write(chunk); err != nil {
			s.failure = err.Error()
			s.srv.log.Error("spool write failed", "err", err)
		}
	}
	return s.ack, nil
}

// Body is end-of-message: decide, apply, and answer CONTINUE (accept). A final response
// would make go-milter forget the connection's facts, and CONTINUE is what both MTAs take
// as accept here.
func (s *session) Body(m *milter.Modifier) (resp milter.Response, err error) {
	defer s.reset()
	applied := false
	defer func() {
		if r := recover(); r != nil {
			s.srv.log.Error("end-of-message panicked", "panic", r, "stack", string(debug.Stack()))
			resp = milter.RespContinue
			if s.msg != nil && !applied {
				apply(m, s.msg.Header, s.unscanned(fmt.Sprintf("internal error: %v", r)))
			}
		}
	}()
	if s.msg == nil { // no MAIL FROM seen (protocol misuse): nothing to decide
		return milter.RespContinue, nil
	}
	s.macros(m)
	s.msg.Body = s.spool.Body()
	start := time.Now()
	d := s.decide()
	applied = true
	if err := apply(m, s.msg.Header, d); err != nil {
		s.srv.log.Error("applying decision failed", "queue_id", s.msg.QueueID, "err", err)
	}
	if s.srv.OnDecision != nil {
		s.srv.OnDecision(s.msg, d, time.Since(start))
	}
	return milter.RespContinue, nil
}

func (s *session) Abort(m *milter.Modifier) error {
	defer func() {
		if r := recover(); r != nil {
			s.srv.log.Error("abort panicked", "panic", r)
		}
	}()
	s.reset()
	return nil
}

// decide runs the decider with the decision deadline. If it overruns (a bug, or a decider
// that ignores its context), the message is delivered unscanned rather than held up.
func (s *session) decide() policy.Decision {
	if s.failure != "" {
		return s.unscanned(s.failure)
	}
	timeout := s.srv.cfg.DecisionTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan policy.Decision, 1)
	dec := s.srv.decider.Load().Decider
	msg := s.msg
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.srv.log.Error("decider panicked", "queue_id", msg.QueueID, "panic", r, "stack", string(debug.Stack()))
				done <- dec.Unscanned(msg, fmt.Sprintf("internal error: %v", r))
			}
		}()
		done <- dec.Run(ctx, msg)
	}()
	select {
	case d := <-done:
		return d
	case <-time.After(timeout + timeout/10):
		s.srv.log.Error("decision overran its deadline", "queue_id", msg.QueueID, "timeout", timeout)
		return dec.Unscanned(msg, fmt.Sprintf("decision overran %s", timeout))
	}
}

// macros copies what fpsafe needs from the current macro packet: each packet replaces
// go-milter's map, so values must be read at every stage.
func (s *session) macros(m *milter.Modifier) {
	if s.msg == nil || m == nil {
		return
	}
	if v := m.Macros["i"]; v != "" {
		s.msg.QueueID = v
	}
	if v := m.Macros["{auth_authen}"]; v != "" {
		s.msg.Env.AuthUser = v
	}
	if v := m.Macros["{client_addr}"]; v != "" && !s.msg.Env.ClientIP.IsValid() {
		if ip, err := netip.ParseAddr(strings.TrimPrefix(v, "IPv6:")); err == nil {
			s.msg.Env.ClientIP = ip.Unmap()
		}
	}
	if v := m.Macros["{client_name}"]; v != "" && s.msg.Env.ClientName == "" {
		s.msg.Env.ClientName = v
	}
}

// reset ends the current message, if any, and removes its spool file.
func (s *session) reset() {
	if s.spool != nil {
		s.srv.spoolBytes.Add(-s.spool.Size())
		if s.msg != nil && s.msg.Body != nil {
			s.msg.Body.Remove()
		} else {
			s.spool.Discard()
		}
	}
	if s.spool != nil || s.msg != nil {
		s.srv.inFlight.Add(-1)
	}
	s.msg, s.spool, s.headerBytes, s.failure = nil, nil, 0, ""
}

// unscanned is the fail-open decision for the current message.
func (s *session) unscanned(why string) policy.Decision {
	return s.srv.decider.Load().Unscanned(s.msg, why)
}

// guard keeps a panic in one callback from killing the connection: the callback still
// gives its usual answer, and the message is decided as unscanned at end-of-message.
func (s *session) guard(stage string, resp *milter.Response, answer milter.Response) {
	if r := recover(); r != nil {
		s.srv.log.Error("milter callback panicked", "stage", stage, "panic", r, "stack", string(debug.Stack()))
		s.failure = fmt.Sprintf("internal error at %s: %v", stage, r)
		*resp = answer
	}
}
