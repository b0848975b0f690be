package clamd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fpsafe/fpsafe/scoring"
)

// ErrTooLarge means the message is above the stream limit: the client's (max_size) or
// clamd's StreamMaxLength ("INSTREAM size limit exceeded. ERROR"). Retrying will not help;
// callers can tell it from a sick daemon with errors.Is.
var ErrTooLarge = errors.New("message above the clamd stream limit")

// sizeLimitReply is what clamd says, then closes the connection, when a stream passes its
// StreamMaxLength.
const sizeLimitReply = "INSTREAM size limit exceeded. ERROR"

// frames splits a z-mode reply into its NUL-terminated replies. A reply that does not end
// with NUL was cut short; empty replies are not something clamd sends.
func frames(data []byte) ([]string, error) {
	if len(data) == 0 {
		return nil, errors.New("empty reply")
	}
	if data[len(data)-1] != 0 {
		return nil, fmt.Errorf("reply cut short (no NUL terminator): %q", clip(data))
	}
	fs := strings.Split(string(data[:len(data)-1]), "\x00")
	for _, f := range fs {
		if strings.TrimSpace(f) == "" {
			return nil, fmt.Errorf("malformed reply (empty line): %q", clip(data))
		}
	}
	return fs, nil
}

// replyError turns an "... ERROR" reply into an error, or returns nil for other replies.
func replyError(f string) error {
	if !strings.HasSuffix(f, " ERROR") {
		return nil
	}
	if f == sizeLimitReply {
		return fmt.Errorf("clamd replied %q: %w", f, ErrTooLarge)
	}
	return fmt.Errorf("clamd replied %q", f)
}

// errorFrame returns the error of the first complete "... ERROR" reply in data, if any: a
// reply that explains why clamd closed the connection.
func errorFrame(data []byte) error {
	parts := strings.Split(string(data), "\x00")
	for _, f := range parts[:len(parts)-1] { // the last part is not NUL-terminated
		if e := replyError(f); e != nil {
			return e
		}
	}
	return nil
}

// parseScan reads an INSTREAM reply: "stream: OK", or one or more (AllMatchScan)
// "stream: <signature> FOUND". An ERROR reply, any other text, and any mix of OK and FOUND
// is an error: the scan gave no trustworthy answer. The one exception is an ERROR after
// FOUND lines (AllMatchScan stopped part-way): what clamd found is still a detection.
func parseScan(data []byte) (scoring.Verdict, error) {
	fs, err := frames(data)
	if err != nil {
		return scoring.Verdict{}, err
	}
	var sigs []string
	ok := 0
scan:
	for _, f := range fs {
		if e := replyError(f); e != nil {
			if len(sigs) > 0 && ok == 0 {
				break scan
			}
			return scoring.Verdict{}, e
		}
		rest, found := strings.CutPrefix(f, "stream: ")
		switch {
		case !found:
			return scoring.Verdict{}, fmt.Errorf("unexpected reply %q", clip([]byte(f)))
		case rest == "OK":
			ok++
		case strings.HasSuffix(rest, " FOUND"):
			sig := strings.TrimSuffix(rest, " FOUND")
			if !validSignature(sig) {
				return scoring.Verdict{}, fmt.Errorf("malformed signature name in %q", clip([]byte(f)))
			}
			sigs = append(sigs, sig)
		default:
			return scoring.Verdict{}, fmt.Errorf("unexpected reply %q", clip([]byte(f)))
		}
	}
	switch {
	case ok > 0 && (ok > 1 || len(sigs) > 0):
		return scoring.Verdict{}, fmt.Errorf("inconsistent reply %q", clip(data))
	case ok == 1:
		return scoring.Verdict{Outcome: scoring.Clean}, nil
	}
	slices.Sort(sigs)
	return scoring.Verdict{Outcome: scoring.Virus, Details: slices.Compact(sigs)}, nil
}

// validSignature accepts printable ASCII without spaces: what ClamAV signature names are
// made of ("Win.Test.EICAR_HDB-1", "PUA.Lab.TestString.UNOFFICIAL").
func validSignature(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// parsePing accepts exactly one "PONG" reply.
func parsePing(data []byte) error {
	fs, err := frames(data)
	if err != nil {
		return err
	}
	if len(fs) != 1 || fs[0] != "PONG" {
		if e := replyError(fs[0]); e != nil {
			return e
		}
		return fmt.Errorf("unexpected PING reply %q", clip(data))
	}
	return nil
}

// parseVersion accepts exactly one "ClamAV ..." reply and returns it.
func parseVersion(data []byte) (string, error) {
	fs, err := frames(data)
	if err != nil {
		return "", err
	}
	if len(fs) != 1 || !strings.HasPrefix(fs[0], "ClamAV ") || !printable(fs[0]) {
		return "", fmt.Errorf("unexpected VERSION reply %q", clip(data))
	}
	return fs[0], nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// clip shortens a reply for error messages.
func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
