# tcptrace-bpf
#
# The BPF objects in internal/probe/ are generated and committed, so
# `make` (go build) needs no clang. `make generate` rebuilds them; the
# committed objects were built with Debian 12's clang 14.0.6 (package
# clang-14), and CI checks that regenerating them changes nothing.

# sudo's secure_path often lacks Go: fall back to the standard install.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
CLANG   ?= clang-14
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build cross generate check-headers check-generate vmlinux test test-otel test-short test-vm lint bench bench-ratio soak clean

all: build

# CGO_ENABLED=0: a static binary, and one that can drop capabilities on
# every thread after attach (the runtime refuses that with cgo linked in).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o tcptrace-bpf ./cmd/tcptrace-bpf

# The offline commands (analyze, report, --help, --version) on every
# system a recording is read on: cross-build the binary and every test
# binary that builds there (tracing itself needs Linux and says so).
CROSS ?= darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
cross:
	@set -e; for t in $(CROSS); do os=$${t%/*}; arch=$${t#*/}; \
		echo "cross: $$os/$$arch"; \
		GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/tcptrace-bpf; \
		GOOS=$$os GOARCH=$$arch $(GO) vet ./...; \
		for p in $$(GOOS=$$os GOARCH=$$arch $(GO) list ./...); do \
			GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) test -c -o /dev/null $$p >/dev/null; done; \
	done

# Compile bpf/tcptrace.bpf.c into internal/probe/tcptrace_bpfel.{go,o}.
generate:
	$(GO) generate ./...

# Fails when the committed generated code is not what the sources give, or
# when compiling the program would read a header from outside the
# repository (a hand-installed libbpf-dev must never make this pass where a
# fresh machine fails). The flags are the ones in gen.go's go:generate line.
BPF_CFLAGS = $(shell sed -n 's|.*bpf/tcptrace.bpf.c -- ||p' gen.go)
check-headers:
	@deps=$$($(CLANG) -target bpf -M $(BPF_CFLAGS) bpf/tcptrace.bpf.c | tr -d '\\' | tr ' ' '\n' | grep -v ':$$' | grep .); \
	test -n "$$deps" || { echo "check-headers: no dependency list from $(CLANG)" >&2; exit 1; }; \
	out=$$(for d in $$deps; do r=$$(realpath -m "$$d"); case "$$r" in "$(CURDIR)"/bpf/*) ;; *) echo "$$d";; esac; done); \
	test -z "$$out" || { echo "BPF headers from outside the repository (vendor them under bpf/include):" >&2; echo "$$out" >&2; exit 1; }
	@echo "check-headers: every BPF header is inside bpf/"

check-generate: check-headers generate
	git diff --exit-code -- internal/probe/ || \
		{ echo "generated BPF code is stale: run make generate and commit" >&2; exit 1; }

# Regenerate the vendored kernel type header from the running kernel.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

# The whole suite. As root it loads the real programs and drives real
# sockets in network namespaces of its own; TCPTRACE_REQUIRE_BPF=1 turns
# every privilege skip into a failure.
test:
	$(GO) test -count=1 ./...

# The OpenTelemetry Collector end to end (deploy/otelcol, a Go module of
# its own, so the root's ./... does not enter it): builds the collector
# and the tracer, then runs the shipped deploy/logging/otelcol.yaml against
# the real tracer under traffic, with rotations and restarts. Root.
# CGO_ENABLED=0 as the test builds the binaries, so that they reuse what
# compiling the test compiled.
test-otel:
	cd deploy/otelcol && export CGO_ENABLED=0 && $(GO) vet ./... && \
		$(GO) test -count=1 -timeout 10m -v -run TestCollectorShipsEveryRecord .

# Root-free part only.
test-short:
	$(GO) test -count=1 -short ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel\.go$$'))" || \
		{ gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel\.go$$'); echo "gofmt needed" >&2; exit 1; }
	$(GO) vet ./...

clean:
	rm -f tcptrace-bpf tcptrace-bench

# Micro-benchmarks of the user-side pipeline, then the end-to-end churn
# benchmark (root, perf): the share of busy CPU that tracing takes, from
# perf samples of every CPU, every row twice (one row with 100,000 idle
# connections watched besides the churn), and the tracer's memory with
# 100,000 connections open. bench-ratio is the older throughput-ratio
# table. Method and figures: docs/performance.md.
BENCH_ROUNDS ?= 2
BENCH_PAIRS ?= 9
BENCH_CONNS ?= 40000
BENCH_IDLE ?= 100000
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(GO) build -o tcptrace-bench ./cmd/tcptrace-bench
	./tcptrace-bench --tracer ./tcptrace-bpf --share --rounds $(BENCH_ROUNDS) --conns $(BENCH_CONNS) --idle $(BENCH_IDLE)
	./tcptrace-bench --tracer ./tcptrace-bpf --rss 100000

bench-ratio: build
	$(GO) build -o tcptrace-bench ./cmd/tcptrace-bench
	./tcptrace-bench --tracer ./tcptrace-bpf --pairs $(BENCH_PAIRS) --conns $(BENCH_CONNS)

# Ten minutes of churn under the tracer; RSS and goroutines must stay flat
# (root; not in CI). Figures: docs/reliability.md.
soak: build
	$(GO) build -o tcptrace-bench ./cmd/tcptrace-bench
	./tcptrace-bench --tracer ./tcptrace-bpf --soak 10m

# The tracer on another kernel: Debian's linux-image-amd64 (6.1) booted
# under qemu (software emulation) from an initramfs of static binaries.
# Needs: apt-get install qemu-system-x86 busybox-static cpio linux-image-amd64.
# .ci/run runs it (a few minutes under emulation); last result in
# docs/reliability.md.
VM_KERNEL ?= $(shell ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
test-vm:
	CGO_ENABLED=0 TCPTRACE_VM_KERNEL=$(VM_KERNEL) $(GO) test -count=1 -v -timeout 15m -run TestOnOtherKernel ./internal/vmtest
