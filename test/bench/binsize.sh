#!/usr/bin/env bash
# Binary and image sizes, cairn-caddy beside stock Caddy built the same way
# (docs/benchmarks.md, "Binary and image size"). Builds, each with
# CGO_ENABLED=0 go build -trimpath -ldflags='-s -w':
#   - stock Caddy at the version xcaddy.json pins (its cmd/caddy main, from
#     the module proxy, in a scratch module);
#   - cairn-caddy with Caddy's whole standard module set (-tags
#     caddy_standard), as before the cuts;
#   - cairn-caddy as the image ships it (image.BuildTags);
# then prints each binary's size and its gzip -9 size, the size by module
# of the shipped binary (cairn-image size, over `go tool nm -size`), and
# builds the amd64 image, and stock Caddy on the same base layer, to
# report their uncompressed and compressed sizes.
#
#   test/bench/binsize.sh            (make size)
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-$(sed -n 's/^toolchain //p' go.mod)}
caddy_version=$(sed -n 's/.*"caddy_version": *"\([^"]*\)".*/\1/p' xcaddy.json)
tags=$(sed -n 's/^const BuildTags = "\(.*\)"$/\1/p' internal/image/binary.go)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-trimpath -ldflags='-s -w')

mkdir -p "$work/stock"
cat >"$work/stock/main.go" <<'GO'
// Stock Caddy, as caddy's own cmd/caddy builds it.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() { caddycmd.Main() }
GO
(
	cd "$work/stock"
	go mod init stock >/dev/null 2>&1
	go get "github.com/caddyserver/caddy/v2@$caddy_version" >/dev/null 2>&1
	go mod tidy >/dev/null 2>&1
	CGO_ENABLED=0 go build "${flags[@]}" -o "$work/caddy-stock" .
)
CGO_ENABLED=0 go build "${flags[@]}" -tags "$tags,caddy_standard" -o "$work/cairn-standard" ./cmd/cairn-caddy
CGO_ENABLED=0 go build "${flags[@]}" -tags "$tags" -o "$work/cairn-caddy" ./cmd/cairn-caddy
CGO_ENABLED=0 go build -trimpath -tags "$tags" -o "$work/cairn-caddy-symbols" ./cmd/cairn-caddy

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
row() {
	local size gz
	size=$(stat -c %s "$2")
	gz=$(gzip -9 -c "$2" | wc -c)
	printf '| %s | %s | %s |\n' "$1" "$(mb "$size")" "$(mb "$gz")"
}
echo "| binary | stripped | gzip -9 |"
echo "|---|---|---|"
row "stock Caddy $caddy_version" "$work/caddy-stock"
row "cairn-caddy, Caddy's standard modules" "$work/cairn-standard"
row "cairn-caddy as shipped (-tags $tags)" "$work/cairn-caddy"
echo
go run ./cmd/cairn-image size -top 25 "$work/cairn-caddy-symbols"
echo
go run ./cmd/cairn-image build --out "$work/image" --platforms linux/amd64 \
	--version "$(git describe --tags --always --dirty)" --revision "$(git rev-parse HEAD)" \
	--created "$(git log -1 --format=%ct)" --json >"$work/image.json"
go run ./cmd/cairn-image inspect "$work/image/oci"
go run ./cmd/cairn-image build --out "$work/image-stock" --platforms linux/amd64 \
	--binary "linux/amd64=$work/caddy-stock" --version "$caddy_version" --revision stock \
	--created "$(git log -1 --format=%ct)" >/dev/null
echo "stock Caddy on the same base layer:"
go run ./cmd/cairn-image inspect "$work/image-stock/oci"
