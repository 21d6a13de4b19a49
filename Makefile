# Two entry points for people (README.md): `make run` builds everything and starts a node,
# `make test` runs every check CI runs. Everything else here serves those two.

GO       ?= go
NPM      ?= npm
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/exo-nix/exo/appliance/buildinfo.Version=$(VERSION) \
            -X github.com/exo-nix/exo/appliance/buildinfo.Commit=$(COMMIT)
BIN      := bin/exo
# go-nvml's header marks NVML calls we never make as deprecated; keep build output readable.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# Flags for `make run`; override e.g. `make run RUN_FLAGS="--api-addr 127.0.0.1:8080"`.
RUN_FLAGS ?=
# The bundled demo model (stories260K, MIT) is always served by `make run`.
DEMO_MODELS := appliance/store/testdata/stories260K

.PHONY: all build run test test-arm64 test-go test-frontend test-browser test-nix test-conformance lint-go frontend clean

all: build

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && $(NPM) ci --no-audit --no-fund
	touch $@

frontend: frontend/node_modules/.installed
	cd frontend && $(NPM) run build

build: frontend
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

run: build
	./$(BIN) serve --models-dir $(DEMO_MODELS) $(RUN_FLAGS)

test: test-frontend lint-go test-nix test-go test-arm64 test-browser test-conformance

test-frontend: frontend/node_modules/.installed
	cd frontend && $(NPM) run check && $(NPM) run lint && $(NPM) test && $(NPM) run build

lint-go:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './frontend/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

OPENAI_NODE := appliance/e2e/testdata/openai-node

$(OPENAI_NODE)/node_modules/.installed: $(OPENAI_NODE)/package.json $(OPENAI_NODE)/package-lock.json
	cd $(OPENAI_NODE) && $(NPM) ci --no-audit --no-fund
	touch $@

# The dashboard is embedded, so the frontend is built before the Go tests (test-frontend does it).
test-go: $(OPENAI_NODE)/node_modules/.installed
	$(GO) test -race -timeout 45m ./...

# The assembly kernels' other halves: arm64 NEON under user-mode QEMU, the pure-Go twins alone,
# and, on a CPU with AVX-512, the kernel choices of CPUs without it (AVX2 with AVX-VNNI, as Intel's
# since Alder Lake, and AVX2 alone, as many other desktop and server CPUs) or without its BF16
# extension (as Intel's servers before Cooper Lake), which the AVX-512 kernels would otherwise
# replace in every test.
test-arm64:
	GOARCH=arm64 $(GO) vet ./appliance/engine/kernels/
	GOARCH=arm64 $(GO) test -exec qemu-aarch64-static -short ./appliance/engine/kernels/ ./appliance/engine/model/ ./appliance/engine/scheduler/
	$(GO) test -tags purego -short ./appliance/engine/kernels/ ./appliance/engine/model/
	GODEBUG=cpu.avx512f=off $(GO) test -short ./appliance/engine/kernels/ ./appliance/engine/model/
	GODEBUG=cpu.avx512f=off,cpu.avxvnni=off $(GO) test -short ./appliance/engine/kernels/ ./appliance/engine/model/
	GODEBUG=cpu.avx512bf16=off $(GO) test -short ./appliance/engine/kernels/ ./appliance/engine/model/

# Nix files parse, the pure helpers' tests pass, flake.lock and go.mod's go line agree, vendorHash
# is current (Nix here can evaluate but not build; nix flake check needs Nix with KVM).
test-nix:
	nix/check.sh

# systemd conformance: the three units rendered by the NixOS module's helpers run in a Debian
# guest under QEMU (root; skips without root, fails under CI=true).
test-conformance: build
	EXO_BIN=$(abspath $(BIN)) vm-tests/debian/conformance.sh

# The dashboard in Debian's Chromium against real exo processes (single node and a 3-node cluster).
test-browser: build
	cd frontend && EXO_BIN=$(abspath $(BIN)) $(NPM) run test:browser

clean:
	rm -rf bin frontend/node_modules frontend/dist/assets frontend/dist/index.html
