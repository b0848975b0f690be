// Package testmsg builds the test messages fpsafe's tests send to real engines: ham, GTUBE
// spam, an EICAR attachment and large attachments. EICAR is assembled at run time from two
// halves so that no file in the repository trips a scanner on a developer's machine.
package testmsg

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/fpsafe/fpsafe/internal/mail"
)

// EICAR returns the 68-byte EICAR anti-virus test file.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
}

// GTUBE is the Generic Test for Unsolicited Bulk Email: SpamAssassin and rspamd treat any
// message containing it as spam.
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Ham is a small, ordinary business message (CRLF line ends).
func Ham() []byte {
	return crlf(`From: Alice Example <alice@example.org>
To: Bob <bob@example.net>
Subject: Quarterly figures meeting
Date: Mon, 2 Nov 2026 10:00:00 +0000
Message-ID: <ham-1@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello Bob,

the quarterly figures are ready. Can we meet on Thursday at 10 to go through
them before they go to the board? I have booked the small meeting room.

Best regards,
Alice
`)
}

// Spam is a message whose body carries GTUBE.
func Spam() []byte {
	return crlf(`From: Spammer <spam@spam.example>
To: bob@example.net
Subject: Test spam mail (GTUBE)
Date: Mon, 2 Nov 2026 10:00:00 +0000
Message-ID: <gtube-1@spam.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

This is the GTUBE, the
	Generic
	Test for
	Unsolicited
	Bulk
	Email

` + GTUBE + `
`)
}

// Attachment builds a multipart message with one base64 attachment.
func Attachment(subject, filename string, data []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `From: Alice Example <alice@example.org>
To: bob@example.net
Subject: %s
Date: Mon, 2 Nov 2026 10:00:00 +0000
Message-ID: <att-%d@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

Please find the file attached.

--b1
Content-Type: application/octet-stream; name="%s"
Content-Disposition: attachment; filename="%s"
Content-Transfer-Encoding: base64

`, subject, len(data), filename, filename)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n--b1--\n")
	return crlf(b.String())
}

// Virus is a message with EICAR attached.
func Virus() []byte { return Attachment("Invoice", "invoice.com", EICAR()) }

// Big is a message with an attachment of n random bytes (seeded, so repeatable).
func Big(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return Attachment("Big file", "data.bin", data)
}

// Parse turns raw bytes into a Message with the given envelope.
func Parse(raw []byte, env mail.Envelope) *mail.Message {
	m, err := mail.ReadMessage(bytes.NewReader(raw), mail.NewSpool("", 64<<20))
	if err != nil {
		panic(err)
	}
	m.Env = env
	return m
}

func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
}
