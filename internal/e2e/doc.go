// Package e2e holds fpsafe's end-to-end test (e2e_test.go): real Postfix and Sendmail
// instances, on 127.0.0.1 and in temp dirs, pass a corpus of messages through the fpsafe
// binary (which asks real clamd, spamd and rspamd) to an SMTP sink run by the test, and a
// ledger checks that every message offered was delivered or held, none rejected or lost,
// also while fpsafe is killed and an engine is stopped. Run it with `make e2e`.
package e2e
