-- The social layer of issue 14: role grants, conversation policy, sealed
-- reports, invites and opt-ins. Nothing here names a report's reporter or
-- keeps plaintext a client wrote: report content is ciphertext sealed to
-- the conversation's admins, and warning reasons and resolution notes are
-- not stored at all.

-- When a member's role was granted, and by which member (the granting
-- member's account DID). NULL for the plain member role.
ALTER TABLE members ADD COLUMN role_granted_at INTEGER;
ALTER TABLE members ADD COLUMN role_granted_by TEXT;

-- A conversation's policy. No row: the defaults (docs/moderation.md).
CREATE TABLE convo_policies (
	convo_id               TEXT PRIMARY KEY REFERENCES convos (id) ON DELETE CASCADE,
	allow_invites          INTEGER NOT NULL,
	admin_only_invites     INTEGER NOT NULL,
	allow_member_add       INTEGER NOT NULL,
	allow_member_remove    INTEGER NOT NULL,
	require_admin_approval INTEGER NOT NULL,
	max_members            INTEGER NOT NULL,
	updated_at             INTEGER NOT NULL,
	updated_by             TEXT NOT NULL
);

-- A report: routing metadata and the sealed blob, byte for byte. No
-- reporter column, by design.
CREATE TABLE reports (
	id          TEXT PRIMARY KEY,
	convo_id    TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	target_did  TEXT NOT NULL,
	category    TEXT NOT NULL,
	sealed      BLOB NOT NULL,
	status      TEXT NOT NULL,
	action      TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	resolved_at INTEGER
);
CREATE INDEX reports_convo ON reports (convo_id, status, created_at DESC);

-- Invites: the SHA-256 of the invite's pre-shared key, never the key.
CREATE TABLE invites (
	id         TEXT PRIMARY KEY,
	convo_id   TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	psk_hash   TEXT NOT NULL,
	created_by TEXT NOT NULL,
	target_did TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER,
	max_uses   INTEGER NOT NULL DEFAULT 0,
	use_count  INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER,
	revoked_by TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX invites_psk ON invites (convo_id, psk_hash);

-- Accounts that opted in to MLS chat, and when (bucketed).
CREATE TABLE opt_ins (
	did          TEXT PRIMARY KEY,
	opted_in_at  INTEGER NOT NULL
);
