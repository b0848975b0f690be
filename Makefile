# fpsafe: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin/fpsafe
PKGS      := ./...
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BENCHTIME ?= 2s
FUZZTIME  ?= 30s

.PHONY: all build run test deps lint unit bench clean e2e fuzz fuzz-smoke soak

all: build

## build: compile bin/fpsafe
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fpsafe

## run: build and run the milter on its embedded default config (inet:127.0.0.1:8890)
run: build
	./$(BIN) serve

## test: install the Debian packages the tests run for real (as root), then lint, run every
## test, a short run of every fuzz target, and the end-to-end run with real MTAs
test: deps lint unit fuzz-smoke e2e

## deps: install clamd, spamd, rspamd, redis, postfix, miltertest ... (needs root when missing)
deps:
	bash scripts/install-deps.sh

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## unit: every Go test but the end-to-end run, with the race detector, against the real daemons
unit:
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list $(PKGS) | grep -v /internal/e2e)

## e2e: real Postfix and Sendmail, engines and fpsafe, a corpus, failure drills, a balanced ledger
e2e:
	$(GO) test -count=1 -timeout 30m -v ./internal/e2e/

## fuzz: every Go fuzz target for FUZZTIME (default 30s) each; crashers land in testdata/fuzz/
fuzz:
	GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME)

## fuzz-smoke: every fuzz target for 5s (part of make test)
fuzz-smoke:
	GO=$(GO) bash scripts/fuzz.sh 5s

## bench: Go benchmarks, fpsafe's peak/steady RSS, and Postfix + smtp-source against fpsafe and the
## classic milters (repetitions interleaved; BENCH_MESSAGES per rep, BENCH_STEADY); see docs/BENCHMARKS.md
BENCH_MESSAGES ?= 2000
bench:
	BENCH_MESSAGES=$(BENCH_MESSAGES) BENCHTIME=$(BENCHTIME) GO=$(GO) bash scripts/bench.sh

## soak: fault soak (not part of make test): SOAK_MINUTES (default 10) of mail through real Postfix
## and fpsafe while fpsafe, clamd and redis are killed and engines frozen at random; the ledger must
## balance and fpsafe's RSS, threads and open files return to their start; see docs/RELIABILITY.md
soak:
	m=$${SOAK_MINUTES:-10}; SOAK_MINUTES=$$m $(GO) test -tags soak -count=1 -v -timeout $$((m + 20))m ./internal/soak/

clean:
	rm -rf bin
