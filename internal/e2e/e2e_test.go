package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/daemontest"
	"github.com/fpsafe/fpsafe/internal/smtptest"
	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// settleWait bounds the wait for the queues to drain after each phase.
const settleWait = 120 * time.Second

// TestEndToEnd runs the whole chain on 127.0.0.1 for each MTA: SMTP client -> Postfix or
// Sendmail -> fpsafe (milter) -> clamd + spamd + rspamd, MTA -> SMTP sink. It sends the
// corpus, then kills fpsafe mid-stream and restarts it, then stops clamd, and checks the
// ledger: every message offered is delivered or held; none rejected, none lost.
func TestEndToEnd(t *testing.T) {
	start := time.Now()
	bin := buildFpsafe(t)
	spamd := daemontest.StartSpamd(t)
	rspamd := daemontest.StartRspamd(t)
	t.Logf("fpsafe built, spamd and rspamd ready in %s", time.Since(start).Round(time.Millisecond))
	for _, name := range []string{"postfix", "sendmail"} {
		t.Run(name, func(t *testing.T) { runMTA(t, name, bin, spamd.Addr, rspamd.Addr) })
	}
}

func runMTA(t *testing.T, name, bin, spamdAddr, rspamdAddr string) {
	start := time.Now()
	s := smtptest.StartSink(t)
	clamd := daemontest.Clamd(t) // per MTA: the clamd drill stops it
	clamSig := addClamTestSignature(t, clamd)
	redis, redisURL := seedAllowlist(t) // per MTA: the redis drill stops it
	fp := startFpsafe(t, bin, engines{clamd: clamd.Addr, spamd: spamdAddr, rspamd: rspamdAddr, redis: redisURL})
	var m mta
	switch name {
	case "postfix":
		m = &postfixMTA{daemontest.StartPostfix(t, daemontest.PostfixOptions{Milter: fp.milterAddr(), RelayHost: s.Addr})}
	case "sendmail":
		m = &sendmailMTA{daemontest.StartSendmail(t, daemontest.SendmailOptions{Milter: fp.sendmailMilter(), RelayHost: s.Addr})}
	}
	t.Logf("%s ready on %s (fpsafe %s, sink %s) in %s", name, m.Addr(), fp.addr, s.Addr, time.Since(start).Round(time.Millisecond))

	l := &ledger{mta: name}
	defer func() {
		saveLogs(t, name, m, fp, l)
		line := l.summary()
		t.Log(line)
		fmt.Println(line)
		if c := l.counts(); !c.balanced() {
			t.Errorf("ledger does not balance: %s", line)
			for _, o := range l.byPhase("") {
				if o.Out != outDelivered && o.Out != outHeld {
					t.Logf("  %s %s %s: %s %v", o.Phase, o.Msg.Name, o.Rcpt, o.Out, o.Err)
				}
			}
		}
		if others := s.Others(l.rcpts()); len(others) > 0 {
			t.Errorf("%d unexpected deliveries at the sink (bounces?), first from <%s>:\n%.2000s", len(others), others[0].From, others[0].Data)
		}
	}()

	phase := time.Now()
	corpus := buildCorpus(t, name, clamSig)
	offers := sendAll(l, m.Addr(), "corpus", corpus, 4)
	settle(t, m, s, offers, settleWait)
	for _, o := range offers {
		checkOffer(t, m, o, verdictsOne)
	}
	t.Logf("corpus: %d messages in %s; %s", len(offers), time.Since(phase).Round(time.Millisecond), verdictCounts(offers))

	phase = time.Now()
	killDrill(t, m, s, l, fp)
	t.Logf("kill drill in %s", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	clamdDrill(t, m, s, l, clamd)
	t.Logf("clamd drill in %s", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	redisDrill(t, m, s, l, redis)
	t.Logf("redis drill in %s", time.Since(phase).Round(time.Millisecond))
}

// redisDrill stops the redis-server that holds the allowlist: fpsafe keeps serving its last
// snapshot, so the authenticated allowlisted sender still gets through (GTUBE included:
// tagged, never held), its forgery is still held, and mail keeps flowing.
func redisDrill(t *testing.T, m mta, s *smtptest.Sink, l *ledger, redis *daemontest.Redis) {
	t.Helper()
	redis.Stop()
	a := allowlisted(t)
	const sender = "filings@agency.example"
	gtube := append([]byte("From: "+sender+"\r\n"), bytes.SplitN(testmsg.Spam(), []byte("\r\n"), 2)[1]...)
	msgs := []corpusMsg{
		{Name: "redis-drill-genuine-gtube", Raw: withTestID(testmsg.Sign(gtube, "agency.example", "s1", a.key), "redis-drill-genuine-gtube"), From: sender, Expect: expectAllowlisted},
		{Name: "redis-drill-forged-gtube", Raw: withTestID(gtube, "redis-drill-forged-gtube"), From: sender, Expect: expectHeld},
		{Name: "redis-drill-ham", Raw: withTestID(testmsg.Ham(), "redis-drill-ham"), Expect: expectDelivered},
	}
	offers := sendAll(l, m.Addr(), "redis-drill", msgs, 2)
	settle(t, m, s, offers, settleWait)
	for _, o := range offers {
		checkOffer(t, m, o, verdictsOne)
	}
}

// Modes of checkOffer for the number of X-FPSafe-Verdict fields on a delivered copy.
const (
	verdictsOne  = iota // fpsafe was up: exactly one
	verdictsNone        // fpsafe was down for the whole session: none
	verdictsAny         // fpsafe died during the session: none or one, never two
)

// checkOffer checks one settled message against its expectation and fpsafe's header
// contract: one X-FPSafe-Verdict and one X-FPSafe-Report, forged ones gone, X-Spam-Flag:
// YES exactly on tag and quarantine, quarantined mail held and held mail quarantined.
func checkOffer(t *testing.T, m mta, o *offer, mode int) {
	t.Helper()
	id := fmt.Sprintf("%s %s (%s)", o.Phase, o.Msg.Name, o.Rcpt)
	switch o.Out {
	case outDelivered:
		if o.Copies > 1 {
			t.Errorf("%s: delivered %d times", id, o.Copies)
		}
		checkHeaders(t, id, string(o.Copy.Data), o, mode)
		if o.Msg.Expect == expectHeld && mode == verdictsOne {
			t.Errorf("%s: delivered, want held (quarantined)", id)
		}
	case outHeld:
		hdr, err := m.HeldHeaders(o.Held)
		if err != nil {
			t.Errorf("%s: held, but its headers: %v", id, err)
			return
		}
		if v := values(headerFields(hdr), "X-FPSafe-Verdict"); len(v) != 1 || verdictOf(v[0]) != "quarantined" {
			t.Errorf("%s: held with X-FPSafe-Verdict %q, want one \"quarantined\"", id, v)
		}
		if o.Msg.Expect != expectHeld {
			t.Errorf("%s: held (quarantined), want %s; headers:\n%s", id, o.Msg.Expect, hdr)
		}
	default:
		// counted by the ledger; say why here
		t.Errorf("%s: %s %v", id, o.Out, o.Err)
	}
}

func checkHeaders(t *testing.T, id, raw string, o *offer, mode int) {
	t.Helper()
	fs := headerFields(raw)
	verdicts, reports := values(fs, "X-FPSafe-Verdict"), values(fs, "X-FPSafe-Report")
	flags := values(fs, "X-Spam-Flag")
	switch {
	case mode == verdictsNone:
		if len(verdicts)+len(reports) != 0 {
			t.Errorf("%s: sent while fpsafe was down, yet has X-FPSafe-Verdict %q", id, verdicts)
		}
		return
	case mode == verdictsAny && len(verdicts)+len(reports) == 0:
		return // fpsafe died during the session: delivered unfiltered, as it must be
	case len(verdicts) != 1 || len(reports) != 1:
		t.Errorf("%s: %d X-FPSafe-Verdict (%q) and %d X-FPSafe-Report fields (%q), want one each", id, len(verdicts), verdicts, len(reports), reports)
		return
	}
	verdict := verdictOf(verdicts[0])
	switch verdict {
	case "allowlisted": // delivered as is, or tagged when an engine found something
		if len(flags) > 1 || len(flags) == 1 && flags[0] != "YES" {
			t.Errorf("%s: verdict allowlisted with X-Spam-Flag %q", id, flags)
		}
	case "tagged", "quarantined":
		if len(flags) != 1 || flags[0] != "YES" {
			t.Errorf("%s: verdict %s with X-Spam-Flag %q, want one YES", id, verdict, flags)
		}
	default:
		if len(flags) != 0 {
			t.Errorf("%s: verdict %s with X-Spam-Flag %q, want none", id, verdict, flags)
		}
	}
	if o.Msg.Expect == expectAllowlisted && mode == verdictsOne && verdict != "allowlisted" {
		t.Errorf("%s: verdict %q, want allowlisted; report: %s", id, verdicts[0], reports[0])
	}
	if o.Msg.Expect == expectClean && mode == verdictsOne && verdict != "clean" {
		t.Errorf("%s: verdict %q, want clean; report: %s", id, verdicts[0], reports[0])
	}
	if o.Msg.Forged {
		if strings.Contains(verdicts[0], "-99.0") || strings.Contains(reports[0], "trust me") {
			t.Errorf("%s: the forged X-FPSafe fields survived: %q / %q", id, verdicts[0], reports[0])
		}
		for _, v := range append(values(fs, "X-Spam-Status"), flags...) {
			if strings.Contains(v, "-99.0") || v == "NO" {
				t.Errorf("%s: the forged X-Spam field %q survived", id, v)
			}
		}
	}
}

// killDrill sends a stream of messages with two parallel senders, SIGKILLs fpsafe while
// they run, lets at least six messages go through while it is down, and restarts it on the
// same port. Mail sent while it is down passes unfiltered (milter_default_action=accept,
// no F= flag); nothing may be lost, rejected or held for fpsafe's absence.
func killDrill(t *testing.T, m mta, s *smtptest.Sink, l *ledger, fp *fpsafe) {
	t.Helper()
	const n, workers, before, whileDown = 40, 2, 10, 6
	offers := make([]*offer, n)
	for i := range offers {
		raw, exp := testmsg.Ham(), expectClean
		if i%5 == 4 {
			raw, exp = testmsg.Spam(), expectHeld
		}
		name := fmt.Sprintf("kill-drill-%02d", i)
		offers[i] = l.newOffer(corpusMsg{Name: name, Raw: withTestID(raw, name), Expect: exp}, "kill-drill")
	}
	feed, results := make(chan *offer), make(chan *offer, n)
	defer close(feed)
	for i := 0; i < workers; i++ {
		go func() {
			for o := range feed {
				send(m.Addr(), defaultSender, o)
				results <- o
			}
		}()
	}
	// The loop feeds the senders itself, so that nothing new is offered while fpsafe
	// restarts: sessions are then cleanly before the kill, while it is down, or after
	// the restart, plus the ones in flight at either moment.
	// killedAt: fpsafe is gone; restarting: its restart begins; restartedAt: it listens.
	var killedAt, restarting, restartedAt time.Time
	restart := func(done, down int) {
		restarting = time.Now()
		fp.start()
		restartedAt = time.Now()
		t.Logf("kill drill: fpsafe restarted on %s after %d messages (%d while down) in %s",
			fp.addr, done, down, restartedAt.Sub(restarting).Round(time.Millisecond))
	}
	timeout := time.After(3 * time.Minute)
	for next, done, down := 0, 0, 0; done < n; {
		var feedCh chan *offer
		var o *offer
		if next < n {
			feedCh, o = feed, offers[next]
		}
		select {
		case feedCh <- o:
			next++
		case o := <-results:
			done++
			if !killedAt.IsZero() && restartedAt.IsZero() && o.Start.After(killedAt) {
				down++
			}
		case <-timeout:
			t.Fatalf("kill drill: %d of %d messages sent after 3 minutes", done, n)
		}
		if killedAt.IsZero() && done >= before {
			fp.kill() // mid-stream: the senders have sessions in flight
			killedAt = time.Now()
			t.Logf("kill drill: fpsafe SIGKILLed after %d messages", done)
		}
		if !killedAt.IsZero() && restartedAt.IsZero() && (down >= whileDown || done == n) {
			restart(done, down)
		}
	}
	if restartedAt.IsZero() {
		restart(n, 0)
	}
	settle(t, m, s, offers, settleWait)
	var unfiltered, filtered, down, after int
	for _, o := range offers {
		mode := verdictsAny
		switch {
		case o.Start.After(killedAt) && o.End.Before(restarting):
			mode = verdictsNone
			down++
		case o.Start.After(restartedAt):
			mode = verdictsOne
			after++
		}
		if mode != verdictsOne && o.Out == outHeld {
			mode = verdictsOne // quarantined by fpsafe before it died: fine
		}
		if mode == verdictsNone {
			// no fpsafe, no quarantine: GTUBE is delivered unfiltered
			o.Msg.Expect = expectDelivered
		}
		checkOffer(t, m, o, mode)
		if o.Out == outDelivered {
			if len(values(headerFields(string(o.Copy.Data)), "X-FPSafe-Verdict")) == 0 {
				unfiltered++
			} else {
				filtered++
			}
		}
	}
	t.Logf("kill drill: %d messages, %d sent while fpsafe was down, %d after its restart; delivered %d unfiltered and %d filtered",
		n, down, after, unfiltered, filtered)
	if down == 0 || after == 0 {
		t.Errorf("kill drill did not exercise both states: %d messages while down, %d after restart", down, after)
	}
}

// clamdDrill stops clamd and checks that mail keeps flowing: EICAR is no longer found
// (delivered, the report names clamd as not scanned), GTUBE is still quarantined by spamd
// and rspamd agreeing, ham is delivered clean.
func clamdDrill(t *testing.T, m mta, s *smtptest.Sink, l *ledger, clamd *daemontest.ClamdDaemon) {
	t.Helper()
	clamd.Stop()
	msgs := []corpusMsg{
		{Name: "clamd-drill-eicar", Raw: withTestID(testmsg.Virus(), "clamd-drill-eicar"), Expect: expectDelivered},
		{Name: "clamd-drill-ham", Raw: withTestID(testmsg.Ham(), "clamd-drill-ham"), Expect: expectClean},
		{Name: "clamd-drill-gtube", Raw: withTestID(testmsg.Spam(), "clamd-drill-gtube"), Expect: expectHeld},
	}
	var offers []*offer
	for i := 0; i < 2; i++ { // twice: the second round meets clamd's open circuit breaker
		offers = append(offers, sendAll(l, m.Addr(), "clamd-drill", msgs, 2)...)
	}
	settle(t, m, s, offers, settleWait)
	for _, o := range offers {
		checkOffer(t, m, o, verdictsOne)
		if o.Out != outDelivered {
			continue
		}
		rep := values(headerFields(string(o.Copy.Data)), "X-FPSafe-Report")
		if len(rep) == 1 && !strings.Contains(rep[0], "not scanned by clamd") {
			t.Errorf("clamd drill %s: report does not say clamd was not scanned: %s", o.Msg.Name, rep[0])
		}
	}
}

// saveLogs copies the MTA's and fpsafe's logs to $FPSAFE_E2E_LOGS/<mta>-*.log, and the
// delivered copies to <mta>-sink/<phase>-<recipient>.eml, when that variable names a
// directory: for looking into a run after its temp dirs are gone.
func saveLogs(t *testing.T, name string, m mta, fp *fpsafe, l *ledger) {
	dir := os.Getenv("FPSAFE_E2E_LOGS")
	if dir == "" {
		return
	}
	copies := filepath.Join(dir, name+"-sink")
	os.RemoveAll(copies)
	os.MkdirAll(copies, 0o755)
	for _, o := range l.byPhase("") {
		if o.Copy != nil {
			user, _, _ := strings.Cut(o.Rcpt, "@")
			os.WriteFile(filepath.Join(copies, o.Phase+"-"+user+".eml"), o.Copy.Data, 0o644)
		}
	}
	var fpLog strings.Builder
	for i, p := range append(fp.old, fp.proc) {
		fmt.Fprintf(&fpLog, "=== fpsafe run %d (pid %d)\n%s", i+1, p.Cmd.Process.Pid, p.Output())
	}
	for file, text := range map[string]string{name + "-mta.log": m.Debug(), name + "-fpsafe.log": fpLog.String()} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Logf("FPSAFE_E2E_LOGS: %v", err)
		}
	}
}

// verdictCounts summarises the verdicts of delivered copies ("held" for held ones) and
// names the tagged messages: what a reader of the CI log wants to see at a glance.
func verdictCounts(offers []*offer) string {
	n := map[string]int{}
	var tagged []string
	for _, o := range offers {
		v := o.Out
		if o.Out == outDelivered {
			v = "no-verdict"
			if vs := values(headerFields(string(o.Copy.Data)), "X-FPSafe-Verdict"); len(vs) > 0 {
				v = verdictOf(vs[0])
			}
		}
		n[v]++
		if v == "tagged" {
			tagged = append(tagged, o.Msg.Name)
		}
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, n[k])
	}
	return fmt.Sprintf("verdicts: %stagged: %s", b.String(), strings.Join(tagged, ", "))
}

// rcpts returns every recipient the ledger handed out.
func (l *ledger) rcpts() map[string]bool {
	out := map[string]bool{}
	for _, o := range l.byPhase("") {
		out[strings.ToLower(o.Rcpt)] = true
	}
	return out
}

// postfixMTA adapts daemontest.Postfix to the ledger.
type postfixMTA struct{ p *daemontest.Postfix }

func (m *postfixMTA) Name() string  { return "postfix" }
func (m *postfixMTA) Addr() string  { return m.p.Addr }
func (m *postfixMTA) Kick()         { m.p.Flush() }
func (m *postfixMTA) Debug() string { return m.p.Log() }

func (m *postfixMTA) Queue() (map[string]*heldMsg, map[string]bool, error) {
	q, err := m.p.Queue()
	held, pending := map[string]*heldMsg{}, map[string]bool{}
	for _, e := range q {
		for _, r := range e.Recipients {
			if e.QueueName == "hold" {
				held[strings.ToLower(r.Address)] = &heldMsg{QueueID: e.QueueID}
			} else {
				pending[strings.ToLower(r.Address)] = true
			}
		}
	}
	return held, pending, err
}

func (m *postfixMTA) HeldHeaders(h *heldMsg) (string, error) { return m.p.Headers(h.QueueID) }

// sendmailMTA adapts daemontest.Sendmail to the ledger.
type sendmailMTA struct{ s *daemontest.Sendmail }

func (m *sendmailMTA) Name() string { return "sendmail" }
func (m *sendmailMTA) Addr() string { return m.s.Addr }
func (m *sendmailMTA) Kick()        {} // the daemon runs the queue every 10 s (-q10s)
func (m *sendmailMTA) Debug() string {
	return "mailq:\n" + m.s.Mailq(false) + "\nmailq -qQ:\n" + m.s.Mailq(true)
}

func (m *sendmailMTA) Queue() (map[string]*heldMsg, map[string]bool, error) {
	q, err := m.s.Queue()
	held, pending := map[string]*heldMsg{}, map[string]bool{}
	for _, e := range q {
		for _, r := range e.Recipients {
			if e.Quarantined {
				held[strings.ToLower(r)] = &heldMsg{QueueID: e.ID, Headers: e.Headers}
			} else {
				pending[strings.ToLower(r)] = true
			}
		}
	}
	return held, pending, err
}

func (m *sendmailMTA) HeldHeaders(h *heldMsg) (string, error) { return h.Headers, nil }
