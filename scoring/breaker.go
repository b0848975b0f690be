package scoring

import (
	"sync"
	"time"
)

// BreakerState is a circuit breaker's state, as metrics and readiness report it.
type BreakerState string

// The breaker states.
const (
	Closed   BreakerState = "closed"    // the engine is asked
	Open     BreakerState = "open"      // the engine is skipped until the cool-down ends
	HalfOpen BreakerState = "half-open" // one probe is in flight
)

// breaker skips an engine after `threshold` consecutive failures for `cooldown`, then lets
// one message through as a probe: success closes it, failure opens it again.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
}

// allow says whether a scan may go ahead, and whether it is the probe after a cool-down.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.threshold:
		return true, false
	case now.Before(b.openUntil) || b.probing:
		return false, false
	}
	b.probing = true
	return true, true
}

// record notes the result of a scan that allow let through.
func (b *breaker) record(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = now.Add(b.cooldown)
	}
}

// release gives back a probe that never reached the engine.
func (b *breaker) release(probe bool) {
	if probe {
		b.mu.Lock()
		b.probing = false
		b.mu.Unlock()
	}
}

func (b *breaker) state() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.threshold:
		return Closed
	case b.probing:
		return HalfOpen
	}
	return Open
}
