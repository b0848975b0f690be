package mail

import (
	"net/mail"
	"strings"
)

// AddressDomain returns the lower-cased domain of an address such as "a@Example.org" or
// "<a@example.org>", or "" when there is none.
func AddressDomain(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

// FromAddresses parses every From: field of m. A message with exactly one From: field
// holding exactly one address is the only kind whose author can be authenticated; callers
// check len() == 1. Unparseable fields yield no addresses and ok = false.
func FromAddresses(m *Message) (addrs []string, fields int, ok bool) {
	ok = true
	for _, v := range m.Values("From") {
		fields++
		list, err := mail.ParseAddressList(v)
		if err != nil {
			ok = false
			continue
		}
		for _, a := range list {
			addrs = append(addrs, strings.ToLower(a.Address))
		}
	}
	return addrs, fields, ok
}
