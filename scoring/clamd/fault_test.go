package clamd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
	"github.com/fpsafe/fpsafe/scoring"
	"github.com/fpsafe/fpsafe/scoring/enginetest"
)

const (
	deadline = 500 * time.Millisecond
	slack    = 2 * time.Second
)

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addr    func(t *testing.T) string
		timeout bool // the error must be a deadline, not a refusal or a parse error
	}{
		{"refused", func(t *testing.T) string { return enginetest.RefusedAddr(t) }, false},
		{"silent", serve(enginetest.Silent), true},
		{"garbage", serve(enginetest.Garbage), false},
		{"close mid reply", serve(enginetest.CloseMidReply("stream: Lab.EICAR.N")), false},
		{"ok without terminator", serve(enginetest.CloseMidReply("stream: OK")), false},
		{"error reply", serve(enginetest.Reply("Can't allocate memory ERROR\x00", 200*time.Millisecond)), false},
		{"late", serve(enginetest.Late("stream: OK\x00", 1500*time.Millisecond)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.addr(t), 0)
			for _, call := range []struct {
				name string
				do   func(ctx context.Context) (scoring.Outcome, error)
			}{
				{"scan", func(ctx context.Context) (scoring.Outcome, error) {
					v, err := c.Scan(ctx, msg(testmsg.Ham()))
					return v.Outcome, err
				}},
				{"ping", func(ctx context.Context) (scoring.Outcome, error) { return "", c.Ping(ctx) }},
				{"version", func(ctx context.Context) (scoring.Outcome, error) { _, err := c.Version(ctx); return "", err }},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				out, err := call.do(ctx)
				took := time.Since(start)
				cancel()
				if err == nil || out != "" {
					t.Fatalf("%s: got outcome %q, err %v; want an error and no outcome", call.name, out, err)
				}
				if took > deadline+slack {
					t.Errorf("%s: returned after %s, deadline %s", call.name, took, deadline)
				}
				if tc.timeout && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s: %v; want it to wrap context.DeadlineExceeded", call.name, err)
				}
				t.Logf("%s: %v (%s)", call.name, err, took.Round(time.Millisecond))
			}
		})
	}
}

// A cancelled context ends a scan at once, even with no deadline set.
func TestCancel(t *testing.T) {
	c := newClient(t, serve(enginetest.Silent)(t), 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Scan(ctx, msg(testmsg.Ham()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > slack {
		t.Errorf("cancel took %s", took)
	}
}

// The wire format: zINSTREAM\0, big-endian length-prefixed chunks carrying exactly the
// message as m.Open() gives it, then a zero-length chunk.
func TestWireFormat(t *testing.T) {
	got := make(chan []byte, 1)
	s := enginetest.NewServer(t, func(conn net.Conn) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		payload, err := readInstream(conn)
		if err != nil {
			t.Errorf("server: %v", err)
			return
		}
		got <- payload
		conn.Write([]byte("stream: B.Sig FOUND\x00stream: A.Sig FOUND\x00stream: B.Sig FOUND\x00"))
	})
	m := msg(testmsg.Big(100 << 10)) // several chunks
	v, err := newClient(t, s.Addr, 0).Scan(context.Background(), m)
	if err != nil || v.Outcome != scoring.Virus || len(v.Details) != 2 || v.Details[0] != "A.Sig" || v.Details[1] != "B.Sig" {
		t.Fatalf("got %+v, %v; want virus [A.Sig B.Sig]", v, err)
	}
	r, _ := m.Open()
	want, _ := io.ReadAll(r)
	if p := <-got; !bytes.Equal(p, want) {
		t.Fatalf("clamd received %d bytes, want the %d bytes of the message", len(p), len(want))
	}
}

// Even when Size understates the message, the client stops streaming at its limit.
func TestLimitWhileStreaming(t *testing.T) {
	received := make(chan int64, 1)
	s := enginetest.NewServer(t, func(conn net.Conn) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		received <- n
	})
	m := &mail.Message{Body: lyingBody(bytes.Repeat([]byte("x"), 200<<10))}
	const limit = 64 << 10
	_, err := newClient(t, s.Addr, limit).Scan(context.Background(), m)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if n := <-received; n > int64(limit+4*(limit/chunkSize+2)+len("zINSTREAM\x00")) {
		t.Fatalf("client sent %d bytes with a limit of %d", n, limit)
	}
}

// lyingBody claims to be tiny.
type lyingBody []byte

func (b lyingBody) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
func (b lyingBody) Size() int64                  { return 1 }
func (b lyingBody) Remove() error                { return nil }

func TestNewRejectsBadAddress(t *testing.T) {
	for _, a := range []string{"", "http://127.0.0.1:3310", "unix:", "127.0.0.1"} {
		if _, err := New(scoring.EngineConfig{Type: "clamd", Address: a}); err == nil {
			t.Errorf("New(%q) accepted", a)
		}
	}
	c, err := New(scoring.EngineConfig{Address: "unix:/run/clamav/clamd.ctl"})
	if err != nil || c.Name() != "clamd" || c.limit != 25<<20 || c.timeout <= 0 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
}

func serve(b enginetest.Behaviour) func(t *testing.T) string {
	return func(t *testing.T) string { return enginetest.NewServer(t, b).Addr }
}

// readInstream reads one z-framed INSTREAM command and returns its payload.
func readInstream(r io.Reader) ([]byte, error) {
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := io.ReadFull(r, cmd); err != nil || string(cmd) != "zINSTREAM\x00" {
		return nil, errors.Join(errors.New("bad command "+string(cmd)), err)
	}
	var payload bytes.Buffer
	for {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return nil, err
		}
		if n == 0 {
			return payload.Bytes(), nil
		}
		if n > chunkSize {
			return nil, os.ErrInvalid
		}
		if _, err := io.CopyN(&payload, r, int64(n)); err != nil {
			return nil, err
		}
	}
}
