package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
)

// Decider decides about one message; *policy.Pipeline is the production one.
type Decider interface {
	// Run decides, returning before ctx's deadline.
	Run(ctx context.Context, m *mail.Message) policy.Decision
	// Unscanned is the fail-open decision used when Run cannot be used or overran.
	Unscanned(m *mail.Message, why string) policy.Decision
}

// Server is fpsafe's milter server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	decider atomic.Pointer[deciderBox]
	spool   string

	inFlight   atomic.Int64 // messages between MAIL FROM and end-of-message
	spoolBytes atomic.Int64 // body bytes held for messages in flight, memory and files
	budget     *mail.Budget // body bytes in memory, all messages together

	// OnDecision, when set before Serve, is called after every decision has been applied
	// (metrics, the decision log). It must not block.
	OnDecision func(m *mail.Message, d policy.Decision, took time.Duration)
	mu         sync.Mutex
	tr         *tracker
	closing    atomic.Bool
}

type deciderBox struct{ Decider }

// Actions fpsafe negotiates: add headers, change/delete headers (to strip forged verdicts),
// quarantine. It never asks to change the body or the recipients.
const Actions = milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine

// Protocol: header values arrive with their leading space, so that fpsafe can rebuild the
// header section byte for byte (DKIM simple canonicalisation).
const Protocol = milter.OptHeaderLeadingSpace

// NoReplies are the protocol flags of the fast protocol: the MTA does not wait for an
// answer to each connect, HELO, MAIL, RCPT, end-of-headers and body chunk event (fpsafe
// would only ever say CONTINUE there). Postfix (>= 2.6) and Sendmail (>= 8.14) honour them
// even for a version 2 milter. Headers still get replies: go-milter v0.5.0 answers a header
// packet it cannot split into name and value (a NUL inside the value) by itself, which with
// SMFIP_NR_HDR would put the MTA one reply out of step — a way for a sender to switch the
// filter off.
const NoReplies = milter.OptNoConnReply | milter.OptNoHeloReply | milter.OptNoMailReply | milter.OptNoRcptReply |
	milter.OptNoEOHReply | milter.OptNoBodyReply

// New returns a server that hands each message to d. log may be nil.
func New(cfg Config, d Decider, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, budget: mail.NewBudget(int64(cfg.SpoolMemoryTotal))}
	s.decider.Store(&deciderBox{d})
	s.spool = cfg.SpoolDir
	if s.spool == "" {
		removeStaleSpools(os.TempDir(), log)
		dir, err := os.MkdirTemp("", fmt.Sprintf("fpsafe-spool-%d-", os.Getpid()))
		if err != nil {
			return nil, fmt.Errorf("spool dir: %w", err)
		}
		s.spool = dir
	} else {
		if err := os.MkdirAll(s.spool, 0o700); err != nil {
			return nil, fmt.Errorf("spool dir %s: %w", s.spool, err)
		}
		removeSpoolFiles(s.spool, log) // left by a crash: no message of this process uses them
	}
	return s, nil
}

// SetDecider swaps the decider (config reload) without disturbing sessions in flight: a
// message uses whichever decider is current at its end-of-message.
func (s *Server) SetDecider(d Decider) { s.decider.Store(&deciderBox{d}) }

// InFlight is the number of messages currently between MAIL FROM and end-of-message.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// SpoolBytes is the number of body bytes held for messages in flight.
func (s *Server) SpoolBytes() int64 { return s.spoolBytes.Load() }

// SpoolDir is where bodies above the memory threshold are written.
func (s *Server) SpoolDir() string { return s.spool }

// Serve accepts MTA connections on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	tr := newTracker(ln, s.cfg.IdleTimeout, s.cfg.MaxConnections)
	s.mu.Lock()
	s.tr = tr
	s.mu.Unlock()
	srv := &milter.Server{
		NewMilter: func() milter.Milter {
			ses := newSession(s)
			if c := tr.claim(); c != nil {
				c.onClose = ses.reset // a dropped connection ends its message: spool and count freed
			}
			return ses
		},
		Actions:  Actions,
		Protocol: Protocol,
	}
	if s.cfg.FastProtocol {
		srv.Protocol |= NoReplies
	}
	if s.cfg.RequestMacros {
		srv.Actions |= milter.OptSetSymList
		srv.SymList = symList
	}
	err := srv.Serve(tr)
	if s.closing.Load() {
		return nil
	}
	return err
}

// symList asks for the macros fpsafe reads. For each stage it replaces the MTA's list, so
// it repeats the macros MTAs send there by default.
var symList = map[milter.Stage][]string{
	milter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{client_addr}", "{client_name}", "{client_port}"},
	milter.StageRcptTo:   {"i", "{rcpt_addr}"},
	milter.StageEOM:      {"i", "{msg_id}", "{client_addr}", "{auth_authen}"},
}

// Shutdown stops accepting connections, waits for messages in flight to be decided (until
// ctx ends), then closes every MTA connection. MTAs then carry on without the milter for
// those sessions (Postfix milter_default_action = accept, Sendmail without F=).
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	tr := s.tr
	s.mu.Unlock()
	if tr == nil {
		return nil
	}
	tr.Listener.Close()
	var err error
	for s.inFlight.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("milter shutdown: %d messages still in flight: %w", s.inFlight.Load(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tr.closeAll()
	tr.wg.Wait()
	if s.cfg.SpoolDir == "" {
		os.RemoveAll(s.spool)
	}
	return err
}
