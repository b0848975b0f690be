package testmsg

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMKey is an Ed25519 signing key and the TXT record that publishes it.
type DKIMKey struct {
	Signer crypto.Signer
	Record string // "v=DKIM1; k=ed25519; p=..."
}

// NewDKIMKey generates a fresh Ed25519 DKIM key.
func NewDKIMKey() DKIMKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return DKIMKey{priv, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

// Sign adds a DKIM-Signature (relaxed/relaxed) for domain and selector to raw, covering
// From, To, Subject, Date and Message-ID.
func Sign(raw []byte, domain, selector string, k DKIMKey) []byte {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: k.Signer,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		panic(fmt.Sprintf("dkim sign: %v", err))
	}
	return out.Bytes()
}

// From is a small message from the given address, with the EICAR file attached when
// virus is true.
func From(from, subject string, virus bool) []byte {
	data := []byte("Quarterly filing acknowledgement, see attachment.\n")
	if virus {
		data = EICAR()
	}
	raw := Attachment(subject, "filing.com", data)
	return append([]byte("From: "+from+"\r\n"), bytes.SplitN(raw, []byte("\r\n"), 2)[1]...)
}
