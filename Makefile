# seedship — see README.md. `make demo` and `make test` are the two commands a new user needs.
GO        ?= go
BIN       := bin/seedship
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
DEMO_DIR  ?= /var/tmp/seedship-demo
FUZZTIME  ?= 2000x
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)
# Real loop-device tests must run (not skip) where the machine can run them.
REQUIRE_LOOP := $(shell [ "$$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v losetup >/dev/null && echo 1)

.PHONY: all build test test-core test-race s3server bench demo lint fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/seedship

## test: everything CI runs: deps, the S3 test server, all tests, race pass, fuzz smoke, tidy check.
test: build
	./scripts/test-deps.sh
	SEEDSHIP_TEST_DISALLOW_SKIP=$${SEEDSHIP_TEST_DISALLOW_SKIP:-1} SEEDSHIP_TEST_REQUIRE_LOOP=$(REQUIRE_LOOP) \
		$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -race -timeout 30m ./format/... ./verify/... ./engine/... ./store/dir/...
	$(MAKE) fuzz FUZZTIME=500x
	$(GO) mod tidy -diff

## test-core: the quick loop for developers (no race pass, no fuzzing).
test-core:
	$(GO) test -count=1 ./...

## bench: throughput ratios against the peer commands and peak memory.
bench:
	$(GO) test -tags bench -run '^$$' -bench . -benchtime 1x -timeout 90m ./bench/

## demo: capture → info → verify → restore on a generated sample ext4 disk.
demo: build
	./scripts/demo.sh $(DEMO_DIR)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## fuzz: run every fuzz target for a fixed count.
fuzz:
	@for p in ./format/ ./verify/ ./device/; do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			echo "fuzz $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; done; done

clean:
	rm -rf bin
