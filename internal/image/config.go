// Package image builds cairn-caddy's OCI image without a container engine:
// a root filesystem of the static binary, Debian's CA bundle and time-zone
// data, the user and group files and the default Caddyfile, packed with
// go-containerregistry into a multi-platform image index, written as an OCI
// image layout and as `docker load` tarballs. The same build gives the same
// digests: every timestamp is the one the caller passes (the commit's time
// in `make image`), and entries are written in a fixed order.
//
// The Dockerfile at the repository root builds the same image with Docker;
// the package's tests keep the two equivalent.
package image

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-chat/cairn-caddy/internal/release"
	"github.com/cairn-chat/cairn-caddy/internal/version"
)

// Paths and identities inside the image. The Dockerfile repeats them; the
// tests compare.
const (
	// BinaryPath is where the cairn-caddy binary lives.
	BinaryPath = "/usr/bin/cairn-caddy"
	// CaddyfilePath is the default configuration the image runs.
	CaddyfilePath = "/etc/caddy/Caddyfile"
	// DataDir is the volume: Caddy's data directory (certificates, the
	// embedded SQLite store, the generated keys) lives under it.
	DataDir = "/data"
	// ConfigDir is Caddy's configuration directory (the autosaved JSON
	// config); nothing in it needs to survive a restart.
	ConfigDir = "/config"
	// UID and GID of the unprivileged user the image runs as (the
	// distroless "nonroot" number, which no Debian package allocates).
	UID = 65532
	GID = 65532
	// UserName is that user's name in /etc/passwd.
	UserName = "cairn"
)

// User is the image's USER, numeric so that a runtime can check it is not
// root without reading /etc/passwd (Kubernetes' runAsNonRoot).
var User = fmt.Sprintf("%d:%d", UID, GID)

// Health check timings: generous enough for the first start, which applies
// the store's migrations and may wait for a certificate.
const (
	HealthInterval    = 30 * time.Second
	HealthTimeout     = 10 * time.Second
	HealthStartPeriod = 60 * time.Second
	HealthRetries     = 3
)

// Metadata is what the labels say about the build.
type Metadata struct {
	// Version is the release (v1.2.3) or a development description
	// (git describe).
	Version string
	// Revision is the commit the binary was built from.
	Revision string
	// Created is the build's timestamp: every file's modification time and
	// the config's creation time. `make image` passes the commit's time.
	Created time.Time
	// Source is the repository URL.
	Source string
	// Licenses is an SPDX expression for the image's contents.
	Licenses string
}

// Label keys (OCI image-spec annotations, used as labels too).
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelSource      = "org.opencontainers.image.source"
	LabelURL         = "org.opencontainers.image.url"
	LabelLicenses    = "org.opencontainers.image.licenses"
	LabelCreated     = "org.opencontainers.image.created"
)

// DefaultLicenses is the licenses label: the project's licence as
// release.License states it for every artifact (SPDX's NOASSERTION until
// the repository states one). `make image IMAGE_LICENSES=...` overrides it
// for one build; the Dockerfile's label is kept equal to it by the tests.
const DefaultLicenses = release.License

// Title and Description are the fixed labels.
const (
	Title       = "cairn-caddy"
	Description = "Caddy with cairn's modules: an edge gateway and MLS delivery service for end-to-end-encrypted atproto group chat"
)

// Labels returns the image's labels.
func (m Metadata) Labels() map[string]string {
	return map[string]string{
		LabelTitle:       Title,
		LabelDescription: Description,
		LabelVersion:     m.Version,
		LabelRevision:    m.Revision,
		LabelSource:      m.Source,
		LabelURL:         m.Source,
		LabelLicenses:    m.Licenses,
		LabelCreated:     m.Created.UTC().Format(time.RFC3339),
	}
}

// Validate names the first missing field.
func (m Metadata) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"version", m.Version}, {"revision", m.Revision}, {"source", m.Source}, {"licenses", m.Licenses},
	} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("image metadata: %s is empty", f.name)
		}
	}
	if m.Created.IsZero() {
		return fmt.Errorf("image metadata: created time is not set")
	}
	return m.CheckStamp()
}

// CheckStamp refuses metadata whose version stamp (PackageVersion) a
// package could not carry or the linker flags could not hold: a revision
// that is not a commit hash, for one.
func (m Metadata) CheckStamp() error {
	pv := m.PackageVersion()
	err := release.CheckVersion(pv)
	if err == nil && !version.Valid(release.SemVer(pv)) {
		err = fmt.Errorf("%s is not a semantic version", release.SemVer(pv))
	}
	if err != nil {
		return fmt.Errorf("image metadata: the binary's version stamp from version %q, revision %q: %w (pass the commit hash as the revision)", m.Version, m.Revision, err)
	}
	return nil
}

// Config returns the runtime configuration: who runs what, where the data
// lives, which ports, how health is checked.
func Config(m Metadata) v1.Config {
	return v1.Config{
		User:       User,
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"run", "--config", CaddyfilePath, "--adapter", "caddyfile"},
		Env: []string{
			"PATH=/usr/bin",
			"HOME=" + DataDir,
			// Caddy keeps its data (certificates, cairn's store and keys)
			// in $XDG_DATA_HOME/caddy: on the volume.
			"XDG_DATA_HOME=" + DataDir,
			"XDG_CONFIG_HOME=" + ConfigDir,
		},
		WorkingDir: DataDir,
		ExposedPorts: map[string]struct{}{
			"80/tcp":  {},
			"443/tcp": {},
			"443/udp": {}, // HTTP/3
		},
		Volumes: map[string]struct{}{DataDir: {}},
		Healthcheck: &v1.HealthConfig{
			Test:        []string{"CMD", BinaryPath, "healthcheck"},
			Interval:    HealthInterval,
			Timeout:     HealthTimeout,
			StartPeriod: HealthStartPeriod,
			Retries:     HealthRetries,
		},
		Labels:     m.Labels(),
		StopSignal: "SIGTERM",
	}
}

// sortedKeys returns a set's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
