package web

import (
	"path"
	"regexp"
	"strings"
)

// ImmutableCacheControl is the Cache-Control of hashed assets: their name
// changes whenever their content does.
const ImmutableCacheControl = "public, max-age=31536000, immutable"

// RevalidateCacheControl is the Cache-Control of everything else the site
// serves (index.html, /config.json, the pages, unhashed files): a cache may
// keep it but must ask again (with the ETag) before using it.
const RevalidateCacheControl = "no-cache"

// hashedAsset matches name.<hash>.js|mjs|css, where the hash is 8 to 64
// characters of [0-9A-Za-z_-] holding at least one digit (what Vite,
// esbuild, webpack and Parcel write by default), so that a plain name such
// as app.something.css is not taken for a hashed one.
var hashedAsset = regexp.MustCompile(`\.([0-9A-Za-z_-]{8,64})\.(?:js|mjs|css)$`)

// IsHashedAsset reports whether a request path names a content-hashed
// asset, which may be cached for a year.
func IsHashedAsset(p string) bool {
	m := hashedAsset.FindStringSubmatch(path.Base(p))
	return m != nil && strings.ContainsAny(m[1], "0123456789")
}
