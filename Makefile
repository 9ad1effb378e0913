# hck-bpf: one entry per job. The generated BPF objects and bindings are
# committed, so only `generate` needs clang; everything else needs Go.

CLANG   ?= clang-19
STRIP   ?= llvm-strip-19
GO      ?= go
BIN     := bin/hck-bpf

# The one place for the BPF compiler and its flags (bpf2go reads these).
export BPF2GO_CC     := $(CLANG)
export BPF2GO_STRIP  := $(STRIP)
export BPF2GO_CFLAGS := -O2 -g -Wall -Werror

.PHONY: all build generate check-generate test test-kernels lint demo bench package clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/hck-bpf

# Rebuild bpf/*_bpfel.{go,o} from bpf/*.c with the pinned clang, and record
# which clang built them.
generate:
	$(GO) generate ./bpf/
	$(CLANG) --version | head -1 > bpf/CLANG_VERSION

# CI: fail when the committed generated files differ from a fresh build. With
# the clang that built them the objects must match byte for byte; with
# another (a newer Debian point release) only the Go bindings are compared,
# since another compiler may lay out the same program differently.
check-generate:
	@want=$$(cat bpf/CLANG_VERSION); have=$$($(CLANG) --version | head -1); \
	$(GO) generate ./bpf/ || exit 1; \
	if [ "$$want" = "$$have" ]; then \
		git diff --exit-code --stat -- bpf/ || \
		{ echo "generated BPF files are stale: run 'make generate' and commit them"; exit 1; }; \
	else \
		echo "warning: bpf objects were built by '$$want', this is '$$have': comparing the Go bindings only"; \
		git diff --exit-code --stat -- 'bpf/*.go' || \
		{ echo "generated BPF bindings are stale: run 'make generate' and commit them"; exit 1; }; \
		git checkout -- 'bpf/*.o'; \
	fi

# Everything, privileged tests included: they need root, and build their
# sockets in network namespaces of their own. Without root they skip, saying why.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# The same suite inside other kernels under qemu: Debian 12's 6.1 (and the
# host's own kernel when an image of it is on disk), a summary per kernel.
# Needs root, qemu-system-x86, busybox-static and kmod; see README "Kernels
# tested" and tools/kernels/matrix.sh.
test-kernels:
	tools/kernels/matrix.sh

# Formatting, vet, and a tidy go.mod: fails when `go mod tidy` would change
# go.mod or go.sum (a dependency marked indirect that is used directly, one
# that is no longer used, a missing checksum).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result"; exit 1; }

# The main job in a throwaway network namespace: hung sockets destroyed,
# healthy ones alive.
demo: build
	$(GO) run ./tools/demo -bin $(BIN)

# Side-by-side benchmark in a throwaway network namespace: sweep, churn,
# kill lag, destroy throughput, memory, owners; prints the results table
# and checks the targets. Under 10 minutes; -quick for a smoke run.
bench: build
	$(GO) run ./tools/bench -bin $(BIN)

# The Debian package, dist/hck-bpf_VERSION_ARCH.deb: the binary (built
# -trimpath, the version from `git describe` stamped in), the systemd unit
# (installed, not enabled), /etc/hck-bpf/config.yaml as a conffile and the
# README. nfpm is used as a Go library (tools/package): no nfpm binary.
package:
	$(GO) run ./tools/package -out dist

clean:
	rm -rf bin dist
