package release

// License is the SPDX licence expression of cairn-caddy, the one place it
// is stated for every artifact: the deb's copyright file
// (packaging/copyright.tmpl), the rpm's License tag, the Homebrew, AUR and
// Nix recipes, and the image's org.opencontainers.image.licenses label
// (internal/image.DefaultLicenses; the Dockerfile's label is kept equal to
// it by internal/image's tests, and packaging/nfpm.yaml's license field,
// which nfpm does not expand, by this package's). The repository states no licence yet, so
// it is SPDX's NOASSERTION; choosing one is the owner's decision. When
// they do: set it here, add the LICENSE file, put the licence text in
// packaging/copyright.tmpl if /usr/share/common-licenses lacks it, and
// change nfpm.yaml's license and the Dockerfile's label (docs/install.md, "Licence").
const License = "NOASSERTION"
