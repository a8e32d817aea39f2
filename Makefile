# CryptoMail — see README.md.
GO ?= go
export CGO_ENABLED = 1

.PHONY: all build run test test-deps vet bench clean crashtest web

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# Runs the server on the documented default: loopback ports, data under ./data.
run:
	$(GO) run ./cmd/cryptomail serve -config config.example.toml

# Installs what the tests need (GnuPG, Postfix) when missing, then runs every test.
# CRYPTOMAIL_REQUIRE_TOOLS=1 turns "tool missing, skipped" into a failure, so a
# broken install can never pass silently.
test: test-deps vet
	CRYPTOMAIL_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 20m ./...

test-deps:
	bash scripts/install-test-deps.sh

# Rebuilds the web client's bundle (web/dist, committed, embedded in the binary) from web/src
# with the npm packages locked in web/package-lock.json. `make test` checks that web/dist is
# exactly what this produces (TestBundleMatchesSources in ./web).
web:
	cd web && npm ci --ignore-scripts --no-audit --no-fund && node build.mjs

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# CryptoMail side by side with Dovecot (LMTP delivery, first page of a 666-message
# inbox, SeXMAP requests/s, scale): installs Dovecot and Postfix's smtp-source when
# missing (root), prints Markdown tables and writes docs/PERFORMANCE.md.
# SCALE=1000,10000,100000 adds the 100k-user row; BENCH_PROFILE=smoke runs small
# counts; MICRO=1 adds the Go micro-benchmarks. scripts/bench-run.sh lists the knobs.
bench:
	GO="$(GO)" SCALE="$(SCALE)" BENCH_PROFILE="$(BENCH_PROFILE)" MICRO="$(MICRO)" bash scripts/bench-run.sh

# Every Fuzz* target of the module, one after another, FUZZTIME each (default 30s);
# a failing input stays in that package's testdata/fuzz/ as a regression case.
.PHONY: fuzz
FUZZTIME ?= 30s
fuzz:
	GO="$(GO)" FUZZTIME="$(FUZZTIME)" bash scripts/bench-fuzz.sh

clean:
	rm -rf bin

# The long crash test: 30 SIGKILLs of a loaded server, then every acknowledged
# message checked (about a minute). Its short form runs in `make test`.
# CRYPTOMAIL_CRASH_KILLS=N sets the number of kills.
crashtest:
	$(GO) test -tags crashtest -run '^TestCrash$$' -count=1 -timeout 30m -v ./internal/faulttest
