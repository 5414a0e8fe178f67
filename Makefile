# seedship — see README.md. `make demo` and `make test` are the two commands a new user needs.
GO        ?= go
BIN       := bin/seedship
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
DEMO_DIR  ?= /var/tmp/seedship-demo
FUZZTIME  ?= 2000x
# Where `go install` puts tools (versitygw, golangci-lint): GOBIN, else GOPATH/bin.
GOBIN_DIR := $(shell d=$$($(GO) env GOBIN); [ -n "$$d" ] || d=$$($(GO) env GOPATH | cut -d: -f1)/bin; echo "$$d")
export PATH := $(GOBIN_DIR):$(PATH)
GOLANGCI_LINT ?= $(GOBIN_DIR)/golangci-lint
# The platforms an operator may run seedship on (info, verify, copy off Linux).
CROSS_TARGETS := linux/amd64 linux/arm64 darwin/arm64 windows/amd64
# make soak: rounds of kill-and-check; SOAK_SEED repeats a run (the seed is printed).
SOAK_ROUNDS ?= 200
SOAK_SEED ?=
# make test runs a short soak.
SOAK_CI_ROUNDS ?= 16
# Checks `make test` runs after the tests: the short soak, the cross-builds
# and the linters (each is also a target of its own).
TEST_GATES := soak cross lint
# Real loop-device tests must run (not skip) where the machine can run them.
REQUIRE_LOOP := $(shell [ "$$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v losetup >/dev/null && echo 1)

.PHONY: all build test test-core test-race s3server bench demo lint cross soak fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/seedship

## test: everything CI runs: deps, the S3 test server, all tests, race pass, fuzz smoke, tidy check,
## then the checks in TEST_GATES: a short soak, the cross-builds, the linters.
test: build
	./scripts/test-deps.sh
	SEEDSHIP_TEST_DISALLOW_SKIP=$${SEEDSHIP_TEST_DISALLOW_SKIP:-1} SEEDSHIP_TEST_REQUIRE_LOOP=$(REQUIRE_LOOP) \
		$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -race -timeout 30m ./format/... ./seed/... ./verify/... ./engine/... ./store/dir/... ./store/storetest/... ./store/volume/... ./resync/... ./sign/...
	$(MAKE) fuzz FUZZTIME=500x
	$(GO) mod tidy -diff
	@for g in $(TEST_GATES); do $(MAKE) $$g SOAK_ROUNDS=$(SOAK_CI_ROUNDS) || exit 1; done

## test-core: the quick loop for developers (no race pass, no fuzzing).
test-core:
	$(GO) test -count=1 ./...

## bench: throughput ratios against the peer commands and peak memory.
bench:
	$(GO) test -tags bench -run '^$$' -bench . -benchtime 1x -timeout 90m ./bench/

## demo: capture → info → verify → restore on a generated sample ext4 disk.
demo: build
	./scripts/demo.sh $(DEMO_DIR)

## lint: go vet, then golangci-lint (.golangci.yml: the package map, staticcheck, errcheck, gofmt, ...).
lint:
	@./scripts/test-deps.sh golangci-lint
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

## cross: build the CLI for every platform in CROSS_TARGETS (no cgo).
cross:
	@for t in $(CROSS_TARGETS); do \
		echo "cross $$t"; \
		CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./cmd/seedship || exit 1; done

## soak: kill capture, copy, verify --repair and restore at random points, SOAK_ROUNDS times,
## checking each time that the image or target is complete and correct, or resumable.
soak: build
	SEEDSHIP_SOAK_BIN=$(CURDIR)/$(BIN) SEEDSHIP_SOAK_ROUNDS=$(SOAK_ROUNDS) SEEDSHIP_SOAK_SEED=$(SOAK_SEED) \
		$(GO) test -tags soak -count=1 -timeout 60m ./soak/

## fuzz: run every fuzz target (every package with a Fuzz test) for a fixed count.
fuzz:
	@for p in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			echo "fuzz $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done

clean:
	rm -rf bin
