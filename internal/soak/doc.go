// Package soak holds the fault soak (`make soak`, docs/RELIABILITY.md): mail flows through
// real Postfix and fpsafe for SOAK_MINUTES while a chaos loop kills and restarts fpsafe,
// clamd and redis-server and freezes spamd, rspamd and clamd; at the end the ledger must
// balance and fpsafe's RSS, threads and open files must be back near their starting level.
// The test is behind the `soak` build tag: `make soak` runs it, `go test ./...` does not.
package soak
