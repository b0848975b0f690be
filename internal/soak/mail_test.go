//go:build soak

package soak

// The soak's ledger; the SMTP client and sink are internal/smtptest's, shared with the
// end-to-end run.

import (
	"fmt"
	"sync"
)

// Outcomes of an offered message.
const (
	outPending   = ""
	outDelivered = "delivered"
	outHeld      = "held"
	outRejected  = "rejected"
	outMissing   = "missing"
)

type offer struct {
	Kind   string // ham, gtube, eicar
	Rcpt   string
	Err    error
	Out    string
	Copies int
}

type ledger struct {
	mu     sync.Mutex
	offers []*offer
}

func (l *ledger) newOffer(kind string) *offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := &offer{Kind: kind, Rcpt: fmt.Sprintf("soak-%06d@rcpt.soak.test", len(l.offers)+1)}
	l.offers = append(l.offers, o)
	return o
}

func (l *ledger) all() []*offer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*offer(nil), l.offers...)
}

type counts struct{ offered, delivered, held, rejected, missing, dup int }

func (l *ledger) counts() counts {
	var c counts
	for _, o := range l.all() {
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
		if o.Copies > 1 {
			c.dup++
		}
	}
	return c
}

func (c counts) balanced() bool {
	return c.offered == c.delivered+c.held && c.rejected == 0 && c.missing == 0
}
