package milter

import (
	"errors"
	"strings"

	"github.com/emersion/go-milter"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
)

// maxQuarantineReason is what Postfix keeps of a quarantine reason (milter8.c).
const maxQuarantineReason = 100

// apply turns a decision into milter actions, at end-of-message (the only stage where both
// MTAs accept them): strip forged fields, prefix the subject, add fpsafe's fields, and ask
// for quarantine. Every action is attempted even if one fails.
func apply(m *milter.Modifier, h []mail.Field, d policy.Decision) error {
	var errs []error
	for _, r := range d.Remove {
		errs = append(errs, m.ChangeHeader(r.Index, r.Name, ""))
	}
	if d.Subject != nil {
		v := " " + mail.Fold(len("Subject"), *d.Subject)
		if hasField(h, "Subject") {
			errs = append(errs, m.ChangeHeader(1, "Subject", v))
		} else {
			errs = append(errs, m.AddHeader("Subject", v))
		}
	}
	for _, f := range d.Add {
		// Header values carry their own leading space: fpsafe negotiates SMFIP_HDR_LEADSPC.
		v := " " + mail.Fold(len(f.Name), f.Value)
		if f.Name == policy.HeaderAuthResults { // RFC 8601: at the top, above older results
			errs = append(errs, m.InsertHeader(0, f.Name, v))
			continue
		}
		errs = append(errs, m.AddHeader(f.Name, v))
	}
	if d.Action == policy.Quarantine && d.Enforced() {
		errs = append(errs, m.Quarantine(quarantineReason(d.Quarantine)))
	}
	return errors.Join(errs...)
}

func hasField(h []mail.Field, name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// quarantineReason is one non-empty line of at most 100 bytes, cut at a rune boundary.
func quarantineReason(r string) string {
	r = strings.Join(strings.Fields(r), " ")
	if r == "" {
		r = "fpsafe: quarantined"
	}
	for len(r) > maxQuarantineReason {
		r = r[:len(r)-1]
		for len(r) > 0 && r[len(r)-1]&0xc0 == 0x80 {
			r = r[:len(r)-1]
		}
	}
	return r
}
