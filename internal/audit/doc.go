// Package audit is cairn's tamper-evident audit log: what operators did,
// who tried to authenticate as one, bans, configuration loads, retention
// purges, and later backups, restores, key rotations and role changes.
//
// Each row is chained to the previous one by an HMAC-SHA256 under a key
// kept outside the database (see [MAC]), so [Log.Verify] finds the first
// row altered, inserted or deleted by someone who can write the database
// but does not hold the key. Pruning removes a prefix of the chain and
// keeps the MAC of the last pruned row as the anchor the chain continues
// from; every prune is itself recorded ([TypeAuditPrune]), so an anchor no
// recorded prune explains is reported too. Deleting the newest rows cannot
// be told from the database alone: compare the head [Log.Verify] reports
// with one noted earlier.
//
// The package does not know Caddy or HTTP. Code that has something to
// audit depends on the one-method [Recorder] interface, not on [Log].
//
// # Adding an event type
//
// Add a Type constant below with a comment saying who records it and what
// Actor, Target and Metadata hold, and list it in docs/operations.md. A
// user-side identity (a DID, a conversation) is never written as it is:
// pass it through the keyed hash (internal/redact) first. Metadata holds
// counts and names, never content.
//
// # Recording from a new operator API route
//
// Routes of internal/operator are recorded by the API itself (one
// [TypeOperatorAction] row per call, written before the route runs, so a
// call that cannot be audited is refused). A route that changes state also
// records its own typed event through the Recorder it is given.
package audit
