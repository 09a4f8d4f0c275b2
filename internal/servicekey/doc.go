// Package servicekey is the service's atproto identity: the signing keys
// of its did:web DID, kept in one file of the data directory (mode 0600),
// their rotation with a grace period, the DID document served at
// /.well-known/did.json, and a signer for the service-auth JWTs the
// service sends (block checks against a PDS, for example).
//
// A rotation adds a key that signs from then on; the previous key stays
// published, and verifies, for the grace period (7 days by default), then
// it is dropped at the next Refresh. The current key is the document's
// #atproto verification method, which atproto verifiers resolve; a key in
// its grace period is published as #atproto_<id>.
//
// The file may be shared by the nodes of a cluster (a shared volume or a
// secret every node mounts): writes are atomic renames under an advisory
// lock beside the file, and each node's Refresh picks up a rotation made
// by another.
//
// It knows nothing of Caddy or HTTP serving beyond the document's JSON.
package servicekey
