# cairn-caddy developer and operator tasks. `make help` lists them.

GO      ?= go
BINARY  ?= cairn-caddy

# The build recipe lives in xcaddy.json; these read it so there is one
# source for the pinned versions (TestXcaddyRecipeMatchesGoMod keeps it equal
# to go.mod).
# XCADDY_JSON=other.json builds another recipe (the tests add a plugin).
XCADDY_JSON    ?= xcaddy.json
CADDY_VERSION  := $(shell sed -n 's/.*"caddy_version": *"\([^"]*\)".*/\1/p' $(XCADDY_JSON))
XCADDY_VERSION := $(shell sed -n 's/.*"xcaddy_version": *"\([^"]*\)".*/\1/p' $(XCADDY_JSON))
MODULE         := $(shell sed -n 's/.*"module": *"\([^"]*\)".*/\1/p' $(XCADDY_JSON))
PLUGINS        := $(shell tr -d '\n' < $(XCADDY_JSON) | sed -n 's/.*"plugins": *\[\([^]]*\)\].*/\1/p' | tr -d '" ' | tr ',' ' ')

# Build and test with the toolchain go.mod names (the one without the
# standard-library vulnerabilities govulncheck reports in older releases).
# The go command fetches it through the module proxy. Exported outright
# rather than left to GOTOOLCHAIN=auto: a Go installed with GOTOOLCHAIN=local
# in its go.env would otherwise ignore the toolchain line. `make
# GOTOOLCHAIN=...` still overrides it.
GOTOOLCHAIN := $(shell sed -n 's/^toolchain //p' go.mod)
export GOTOOLCHAIN

.PHONY: help build build-go release image size run run-dev test test-short vet bench fuzz fuzz-ci fuzz-corpus load-realtime clean \
	scan fmt-check staticcheck gosec govulncheck vulndb vulndb-update npm-audit bench-backup otelcol

help:
	@echo "make build       build ./$(BINARY) with xcaddy from xcaddy.json (Caddy $(CADDY_VERSION) + this module + plugins)"
	@echo "make build-go    build ./$(BINARY) with plain go build (no extra plugins)"
	@echo "make release     tarballs, deb/rpm, SBOM, SHA256SUMS and Homebrew/AUR/Nix recipes in $(DIST)/ (RELEASE_TARGETS=...)"
	@echo "make image       the OCI image for linux/amd64 and linux/arm64, without Docker, in dist/image (docs/install.md)"
	@echo "make size        binary and image sizes beside stock Caddy, and the binary's size by module (docs/benchmarks.md)"
	@echo "make run         run the gateway on Caddyfile.example (https://localhost)"
	@echo "make run-dev     run a local development node on Caddyfile.dev (http://localhost:8080; CAIRN_PLC_URL=...)"
	@echo "make test        run every test (needs PostgreSQL, Redis and Node; see README)"
	@echo "make bench       run the Go benchmarks"
	@echo "make bench-backup  back up and restore 1,000,000 messages against pg_dump (test/bench/backup.sh)"
	@echo "make fuzz        fuzz each parser for FUZZTIME (default 30s)"
	@echo "make fuzz-ci     the same for 5s each, as CI does"
	@echo "make fuzz-corpus copy what fuzzing found into testdata/fuzz/ to commit"
	@echo "make fmt-check   list the tracked Go files (tools/ included) that gofmt would change, and fail if any"
	@echo "make scan        gofmt check, vet, staticcheck, gosec, govulncheck (both modules) and npm audit, as CI does (docs/ci.md)"
	@echo "make vulndb-update  pin the newest golang.org/x/vulndb and rebuild the offline database"
	@echo "make otelcol     build the log-shipping OpenTelemetry Collector (tools/otelcol-cairn) into $(CAIRN_CI_CACHE)"
	@echo "make load-realtime  10,000 SSE streams and a 1,000-member fan-out against a real cairn-caddy (LOAD_FLAGS=...)"

# xcaddy is fetched through the Go module proxy at the pinned version.
# This module is unpublished, so xcaddy must not ask the proxy for it: it
# gets an exact pseudo-version made from the checked-out commit (any
# version does: the replacement by this directory is what is built), and
# `go get module@version` of a replaced module reads the directory, never
# the proxy. A plain `--with $(MODULE)=.` makes xcaddy ask for the latest
# version, which the proxy refuses. XCADDY_FLAGS adds flags (--with
# another/plugin@v1.2.3); BINARY moves the output.
XCADDY_MODULE_VERSION ?= $(shell TZ=UTC git log -1 --format='v0.0.0-%cd-%H' --date=format-local:%Y%m%d%H%M%S 2>/dev/null | cut -c1-34 | grep . || echo v0.0.0-00010101000000-000000000000)
XCADDY_FLAGS ?=
build:
	$(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION) build $(CADDY_VERSION) \
		--output $(BINARY) \
		--with $(MODULE)@$(XCADDY_MODULE_VERSION)=. \
		$(foreach p,$(PLUGINS),--with $(p)) $(XCADDY_FLAGS)

build-go:
	$(GO) build -o ./$(BINARY) ./cmd/cairn-caddy

# Release artifacts (docs/install.md, "Release artifacts"): every target's
# tarball, the linux deb and rpm, the CycloneDX SBOM, SHA256SUMS and the
# Homebrew, AUR and Nix recipes, reproducibly (the same commit gives the
# same bytes). The version comes from a vX.Y.Z tag on the commit, else
# 0.0.0~git<time>.g<commit>; VERSION=... overrides it. The binaries carry
# xcaddy's default tags, so they hold the modules `make build` builds.
DIST                    ?= dist
RELEASE_TARGETS         ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64
RELEASE_TAGS            ?= nobadger,nomysql,nopgx
RELEASE_URL             ?= https://github.com/cairn-chat/cairn-caddy/releases/download/v{version}
PACKAGE_MAINTAINER      ?= cairn-caddy maintainers <cairn-chat@users.noreply.github.com>
VERSION                 ?=
NFPM_VERSION            := v2.45.2
CYCLONEDX_GOMOD_VERSION := v1.10.0
release:
	$(GO) run ./cmd/cairn-release -dist $(DIST) -targets "$(RELEASE_TARGETS)" -tags "$(RELEASE_TAGS)" \
		-version "$(VERSION)" -url "$(RELEASE_URL)" -maintainer "$(PACKAGE_MAINTAINER)" \
		-nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) \
		-cyclonedx github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION)

# The container image, built without a container engine by cmd/cairn-image
# (go-containerregistry): an OCI layout in dist/image/oci and one `docker
# load` archive per platform, tagged from IMAGE_VERSION (a release vX.Y.Z:
# X.Y.Z, X.Y, X and latest; anything else: IMAGE_BRANCH). Every timestamp
# is the commit's (or SOURCE_DATE_EPOCH), so a rebuild of the same commit
# gives the same digests. docs/install.md, "Container image".
IMAGE_REPO      ?= ghcr.io/cairn-chat/cairn-caddy
IMAGE_VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_CREATED   ?= $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))
IMAGE_BRANCH    ?= main
# Empty: the project's licence, release.License (docs/install.md, "Licence").
IMAGE_LICENSES  ?=
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
image:
	$(GO) run ./cmd/cairn-image build --out dist/image --repo $(IMAGE_REPO) \
		--version $(IMAGE_VERSION) --revision $(IMAGE_REVISION) --created $(IMAGE_CREATED) \
		--branch $(IMAGE_BRANCH) $(if $(IMAGE_LICENSES),--licenses $(IMAGE_LICENSES)) --platforms $(IMAGE_PLATFORMS)

# Sizes beside stock Caddy (docs/benchmarks.md). Builds four binaries.
size:
	test/bench/binsize.sh

run:
	$(GO) run ./cmd/cairn-caddy run --config Caddyfile.example

# A node for client development (docs/configuration.md, "Local development").
run-dev:
	$(GO) run ./cmd/cairn-caddy run --config Caddyfile.dev

vet:
	$(GO) vet ./...

# The whole suite: unit, conformance (SQLite and PostgreSQL), integration
# against real cairn-caddy processes, Redis, and the Node interop harnesses.
# Set CAIRN_REQUIRE_SERVICES=1 to fail instead of skip when a service is
# missing (CI does).
test: vet
	$(GO) test -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Backup and restore of 1,000,000 messages, with peak RSS, against pg_dump
# (docs/benchmarks.md). Not part of make test: it takes minutes.
bench-backup:
	test/bench/backup.sh

# Each FuzzX of each package gets FUZZTIME of its own; .ci/fuzz builds each
# package's instrumented test binary once (two at a time) and runs the
# targets from it one after another. What a run finds that widens
# coverage lands in the Go build cache; a failing input lands in the
# package's testdata/fuzz/FuzzX/, where plain `go test` replays it.
FUZZTIME ?= 30s
# Every fuzz target, as package-dir:FuzzName.
FUZZ_TARGETS := $(shell grep -roE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' internal caddymodules cmd | sed 's|/[^/]*:func |:|' | sort)
fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

fuzz-ci: FUZZTIME = 5s
fuzz-ci: fuzz

# Copy the inputs fuzzing kept for widening coverage (in the Go build
# cache) into each package's testdata/fuzz/FuzzX/, to commit: plain `go
# test` replays them, and the next fuzz run starts from them.
fuzz-corpus:
	@cache=$$($(GO) env GOCACHE)/fuzz/$(MODULE); \
	for t in $(FUZZ_TARGETS); do \
		src=$$cache/$${t%%:*}/$${t#*:}; dst=$${t%%:*}/testdata/fuzz/$${t#*:}; \
		[ -d $$src ] || continue; \
		mkdir -p $$dst && cp -n $$src/* $$dst/ && echo "$$dst: $$(ls $$dst | wc -l) inputs"; \
	done

# Static and dependency scanning; CI runs every one and fails on a finding.
# The tools run through the module proxy at these pinned versions.
STATICCHECK_VERSION := v0.8.2
GOSEC_VERSION       := v2.30.0
GOVULNCHECK_VERSION := v1.9.0
# The vulnerability database govulncheck reads is built offline from this
# version of golang.org/x/vulndb (its OSV files and its own indexdb
# command) into a per-user cache outside the checkout, so a fresh clone
# (as CI makes every run) reuses it until the pin moves. `make
# vulndb-update` moves the pin.
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018
VULNDB_CACHE        ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cairn-caddy/vulndb
VULNDB_DIR          := $(VULNDB_CACHE)/$(VULNDB_VERSION)

scan: fmt-check vet staticcheck gosec govulncheck npm-audit

# Every tracked Go file, tools/otelcol-cairn's included (a ./... pattern
# would stop at its go.mod), checked by the pinned toolchain's gofmt rather
# than whichever one is first on PATH. One line names the files to fix; a
# file gofmt cannot parse fails the check with gofmt's own message.
fmt-check:
	@gofmt=$$($(GO) env GOROOT)/bin/gofmt; \
	files=$$(git ls-files -z '*.go' | xargs -0r $$gofmt -l) || exit 1; \
	if [ -n "$$files" ]; then echo "fmt-check: not gofmt-formatted; fix with: gofmt -w" $$files; exit 1; fi

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Exclusions, each with its reason, live in .ci/gosec.json and nowhere
# else: -nosec makes gosec ignore inline #nosec comments.
gosec:
	$(GO) run github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION) -quiet -nosec -conf .ci/gosec.json ./...

vulndb: $(VULNDB_DIR)/index/db.json

$(VULNDB_DIR)/index/db.json:
	@src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -d "$$src/data/osv" || { echo "no data/osv in golang.org/x/vulndb@$(VULNDB_VERSION)"; exit 1; }; \
	tmp=$(VULNDB_DIR).tmp.$$$$; rm -rf $(VULNDB_DIR) $$tmp && mkdir -p $(dir $(VULNDB_DIR)) && \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src/data/osv" -out $$tmp && \
	{ mv -T $$tmp $(VULNDB_DIR) 2>/dev/null || rm -rf $$tmp; } && test -f $@

# The gateway's module, then the log-shipping collector's (tools/otelcol-cairn,
# a module of its own that ./... does not reach), against the same database.
GOVULNCHECK = $(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -db file://$(abspath $(VULNDB_DIR))
govulncheck: vulndb
	$(GOVULNCHECK) ./...
	$(GOVULNCHECK) -C $(OTELCOL_SRC) ./...

vulndb-update:
	@v=$$($(GO) list -m -f '{{.Version}}' golang.org/x/vulndb@latest) && \
	echo "golang.org/x/vulndb $(VULNDB_VERSION) -> $$v" && \
	sed -i "s|^VULNDB_VERSION      := .*|VULNDB_VERSION      := $$v|" Makefile && \
	$(MAKE) --no-print-directory govulncheck

npm-audit:
	bash .ci/npm-audit

# A benchmark, not a test: builds cairn-caddy, seeds the conversations,
# opens the streams and prints what it measured (docs/realtime.md). Pass
# more cairn-load flags in LOAD_FLAGS, e.g. LOAD_FLAGS='-store postgres'
# or '-websocket' or '-profile /tmp/prof'.
LOAD_FLAGS ?=
load-realtime:
	$(GO) run ./cmd/cairn-load $(LOAD_FLAGS)

# The OpenTelemetry Collector that ships the logs to Loki
# (deploy/otelcol, docs/observability.md), from its own module so that its
# dependencies stay out of go.mod. It is cached by the hash of its sources,
# the name TestCollectorShipsTheLogsToLoki looks for, so CI builds it once
# per machine and source change (several minutes from a cold module cache).
CAIRN_CI_CACHE ?= /var/cache/cairn-ci
OTELCOL_SRC    := tools/otelcol-cairn
OTELCOL_BIN     = $(CAIRN_CI_CACHE)/otelcol-cairn-$(shell cd $(OTELCOL_SRC) && cat go.mod go.sum main.go | sha256sum | cut -c1-12)
otelcol:
	@mkdir -p $(CAIRN_CI_CACHE)
	@if [ -x $(OTELCOL_BIN) ]; then echo "$(OTELCOL_BIN) is built"; else \
		cd $(OTELCOL_SRC) && $(GO) build -trimpath -o $(OTELCOL_BIN).tmp . && mv $(OTELCOL_BIN).tmp $(OTELCOL_BIN) && echo "built $(OTELCOL_BIN)"; fi

clean:
	rm -f ./$(BINARY)
	rm -rf dist/image
