# syntax=docker/dockerfile:1
#
# cairn-caddy's image, for people who build with Docker:
#
#     docker buildx build --platform linux/amd64,linux/arm64 \
#         --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) \
#         --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#         -t ghcr.io/cairn-chat/cairn-caddy:1.2.3 .
#
# `make image` builds the same image without a container engine
# (cmd/cairn-image, internal/image). internal/image's tests parse this file
# and keep the two equal: the same files, user, entrypoint, command, ports,
# volume, environment, labels and health check. Change both together.

# The static binary, cross-compiled on the build machine's platform and
# stamped with the version the labels carry, as `make image` and `make
# release` stamp it (cairn-image ldflags prints the flags): a
# release VERSION=v1.2.3 is v1.2.3, anything else the development version
# of REVISION at CREATED, so `cairn-caddy upgrade-binary` accepts it.
FROM --platform=$BUILDPLATFORM golang:1.27.3-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN LDFLAGS="$(go run ./cmd/cairn-image ldflags --version $VERSION --revision $REVISION --created $CREATED)" \
    && CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -tags nobadger,nobbolt,nomysql,nopgx -ldflags "$LDFLAGS" -o /out/cairn-caddy ./cmd/cairn-caddy

# Debian's CA bundle and time-zone data, and the directories the user owns.
FROM debian:bookworm-slim AS debian
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /rootfs/data /rootfs/config /rootfs/tmp \
    && chmod 0750 /rootfs/data /rootfs/config \
    && chmod 1777 /rootfs/tmp

# The image: no shell, no package manager, nothing but what follows.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY deploy/image/rootfs/ /
COPY Caddyfile.example /etc/caddy/Caddyfile
COPY --from=debian /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=debian /usr/share/zoneinfo /usr/share/zoneinfo
COPY --from=debian /usr/share/doc/ca-certificates/copyright /usr/share/doc/ca-certificates/copyright
COPY --from=debian /usr/share/doc/tzdata/copyright /usr/share/doc/tzdata/copyright
COPY --from=debian --chown=65532:65532 /rootfs/data /data
COPY --from=debian --chown=65532:65532 /rootfs/config /config
COPY --from=debian /rootfs/tmp /tmp
COPY --from=build /out/cairn-caddy /usr/bin/cairn-caddy
USER 65532:65532
ENV PATH=/usr/bin \
    HOME=/data \
    XDG_DATA_HOME=/data \
    XDG_CONFIG_HOME=/config
WORKDIR /data
VOLUME /data
EXPOSE 80/tcp 443/tcp 443/udp
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="cairn-caddy" \
      org.opencontainers.image.description="Caddy with cairn's modules: an edge gateway and MLS delivery service for end-to-end-encrypted atproto group chat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/cairn-chat/cairn-caddy" \
      org.opencontainers.image.url="https://github.com/cairn-chat/cairn-caddy" \
      org.opencontainers.image.licenses="NOASSERTION"
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/bin/cairn-caddy", "healthcheck"]
ENTRYPOINT ["/usr/bin/cairn-caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
