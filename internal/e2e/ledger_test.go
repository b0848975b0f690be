package e2e

import (
	"errors"
	"fmt"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/smtptest"
)

// smtpTimeout bounds one SMTP transaction of the test client (connect to QUIT). The MTAs
// wait for fpsafe at end of data: decision_timeout 8 s, plus a 2 MB transfer.
const smtpTimeout = 90 * time.Second

// Outcomes of an offered message.
const (
	outPending   = ""          // accepted, not yet seen delivered or held
	outDelivered = "delivered" // a copy reached the sink
	outHeld      = "held"      // in the Postfix hold queue / a Sendmail hf file
	outRejected  = "rejected"  // any 4xx/5xx (or a broken connection) before the final 250
	outMissing   = "missing"   // accepted, but neither delivered nor held within the wait
)

// offer is one message offered to an MTA and what became of it.
type offer struct {
	Msg    corpusMsg
	Phase  string // "corpus", "kill-drill", "clamd-drill"
	Rcpt   string // unique envelope recipient: the key to find its copy
	Start  time.Time
	End    time.Time
	Err    error // SMTP failure, if any
	Code   int   // its SMTP code (0: network error)
	Out    string
	Copy   *smtptest.Delivery // when delivered
	Held   *heldMsg           // when held
	Copies int                // copies at the sink (more than one is a duplicate delivery)
}

// heldMsg is a quarantined message as the MTA's queue shows it.
type heldMsg struct {
	QueueID string
	Headers string
}

// ledger counts what happened to every message offered to one MTA.
type ledger struct {
	mta    string
	mu     sync.Mutex
	offers []*offer
	seq    int
}

// newOffer registers a message about to be offered and gives it a unique recipient.
func (l *ledger) newOffer(m corpusMsg, phase string) *offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	o := &offer{Msg: m, Phase: phase, Rcpt: fmt.Sprintf("%s-%03d@rcpt.e2e.test", l.mta, l.seq)}
	l.offers = append(l.offers, o)
	return o
}

// byPhase returns the offers of one phase ("" = all), in offering order.
func (l *ledger) byPhase(phase string) []*offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*offer
	for _, o := range l.offers {
		if phase == "" || o.Phase == phase {
			out = append(out, o)
		}
	}
	return out
}

type counts struct{ offered, delivered, held, rejected, missing int }

func (l *ledger) counts() counts {
	var c counts
	for _, o := range l.byPhase("") {
		c.offered++
		switch o.Out {
		case outDelivered:
			c.delivered++
		case outHeld:
			c.held++
		case outRejected:
			c.rejected++
		default:
			c.missing++
		}
	}
	return c
}

// summary is the one ledger line per MTA that CI output shows.
func (l *ledger) summary() string {
	c := l.counts()
	return fmt.Sprintf("ledger: mta=%s offered=%d delivered=%d held=%d rejected=%d missing=%d",
		l.mta, c.offered, c.delivered, c.held, c.rejected, c.missing)
}

// balanced is the pass condition: every message offered was delivered or held.
func (c counts) balanced() bool {
	return c.offered == c.delivered+c.held && c.rejected == 0 && c.missing == 0
}

// send offers one message over its own SMTP connection and records the result; an SMTP
// error is recorded as a rejection, never fatal to the caller's loop.
func send(addr, from string, o *offer) {
	o.Start = time.Now()
	err := smtptest.Send(addr, from, o.Rcpt, o.Msg.Raw, smtpTimeout)
	o.End = time.Now()
	if err != nil {
		o.Err, o.Out = err, outRejected
		var te *textproto.Error
		if errors.As(err, &te) {
			o.Code = te.Code
		}
	}
}

// sendAll offers the messages with `workers` parallel connections and returns when all
// have been offered.
func sendAll(l *ledger, addr, phase string, msgs []corpusMsg, workers int) []*offer {
	offers := make([]*offer, len(msgs))
	for i, m := range msgs {
		offers[i] = l.newOffer(m, phase)
	}
	ch := make(chan *offer)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range ch {
				send(addr, o.Msg.from(), o)
			}
		}()
	}
	for _, o := range offers {
		ch <- o
	}
	close(ch)
	wg.Wait()
	return offers
}

// mta is what the ledger needs from Postfix or Sendmail.
type mta interface {
	Name() string
	Addr() string
	// Queue returns the held messages by recipient and the recipients still queued.
	Queue() (held map[string]*heldMsg, pending map[string]bool, err error)
	// HeldHeaders returns the header section of a held message, fpsafe's fields included.
	HeldHeaders(*heldMsg) (string, error)
	// Kick asks the MTA to retry deferred mail now.
	Kick()
	// Debug returns the MTA's log or queue listing, for failures.
	Debug() string
}

// settle waits (at most wait) until every accepted offer is delivered or held, then
// records the outcomes: what is neither by then is missing.
func settle(t *testing.T, m mta, s *smtptest.Sink, offers []*offer, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	lastKick := time.Now()
	for {
		held, pending, err := m.Queue()
		if err != nil {
			t.Logf("%s queue: %v", m.Name(), err)
		}
		open := 0
		for _, o := range offers {
			if o.Out == outRejected {
				continue
			}
			o.Out, o.Copy, o.Held = outPending, nil, nil
			cs := s.Copies(o.Rcpt)
			o.Copies = len(cs)
			switch {
			case len(cs) > 0:
				o.Out, o.Copy = outDelivered, cs[0]
			case held[strings.ToLower(o.Rcpt)] != nil:
				o.Out, o.Held = outHeld, held[strings.ToLower(o.Rcpt)]
			default:
				open++
			}
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, o := range offers {
				if o.Out == outPending {
					o.Out = outMissing
					names = append(names, fmt.Sprintf("%s (%s, queued: %v)", o.Msg.Name, o.Rcpt, pending[strings.ToLower(o.Rcpt)]))
				}
			}
			sort.Strings(names)
			t.Errorf("%s: %d messages neither delivered nor held after %s: %s\n%s", m.Name(), len(names), wait, strings.Join(names, ", "), tailString(m.Debug(), 6000))
			return
		}
		if time.Since(lastKick) > 10*time.Second {
			m.Kick()
			lastKick = time.Now()
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// field is one header field, unfolded.
type field struct{ Name, Value string }

// headerFields parses the header section of a message (up to the first empty line).
func headerFields(raw string) []field {
	var fs []field
	for _, line := range strings.Split(strings.ReplaceAll(raw, "\r\n", "\n"), "\n") {
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fs) > 0 {
			fs[len(fs)-1].Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fs = append(fs, field{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	return fs
}

// values returns the values of the fields named name (case-insensitive).
func values(fs []field, name string) []string {
	var out []string
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// verdictOf returns the verdict word of an X-FPSafe-Verdict value ("clean; score=0.0").
func verdictOf(v string) string {
	w, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(w)
}

// tailString returns the last n bytes of s.
func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
