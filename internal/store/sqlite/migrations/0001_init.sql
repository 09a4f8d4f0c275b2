-- Times are INTEGER Unix milliseconds (UTC). Activity times are bucketed to
-- 2 s by the store before they are written.

CREATE TABLE convos (
	id               TEXT PRIMARY KEY,
	creator_did      TEXT NOT NULL,
	cipher_suite     TEXT NOT NULL,
	name             TEXT NOT NULL DEFAULT '',
	description      TEXT NOT NULL DEFAULT '',
	epoch            INTEGER NOT NULL,
	-- The per-conversation sequence counter: bumped in the transaction that
	-- inserts the message, so seq is gapless and unique.
	last_seq         INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	last_activity_at INTEGER NOT NULL
);
CREATE INDEX convos_activity ON convos (last_activity_at DESC, id DESC);

CREATE TABLE members (
	convo_id   TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	member_did TEXT NOT NULL,
	user_did   TEXT NOT NULL,
	device_id  TEXT NOT NULL DEFAULT '',
	role       TEXT NOT NULL,
	joined_at  INTEGER NOT NULL,
	left_at    INTEGER,
	PRIMARY KEY (convo_id, member_did)
);
CREATE INDEX members_user ON members (user_did, convo_id) WHERE left_at IS NULL;

-- No sender column, by design: the server never records who sent what.
CREATE TABLE messages (
	convo_id        TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	seq             INTEGER NOT NULL,
	epoch           INTEGER NOT NULL,
	msg_id          TEXT NOT NULL,
	ciphertext      BLOB NOT NULL,
	padded_size     INTEGER NOT NULL,
	received_bucket INTEGER NOT NULL,
	expires_at      INTEGER,
	PRIMARY KEY (convo_id, seq),
	UNIQUE (convo_id, msg_id)
);
CREATE INDEX messages_received ON messages (received_bucket);
CREATE INDEX messages_expires ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- Marks which messages are commits, and for which epoch: one per epoch.
CREATE TABLE commits (
	convo_id TEXT NOT NULL,
	epoch    INTEGER NOT NULL,
	seq      INTEGER NOT NULL,
	PRIMARY KEY (convo_id, epoch),
	UNIQUE (convo_id, seq),
	FOREIGN KEY (convo_id, seq) REFERENCES messages (convo_id, seq) ON DELETE CASCADE
);

CREATE TABLE group_infos (
	convo_id   TEXT PRIMARY KEY REFERENCES convos (id) ON DELETE CASCADE,
	epoch      INTEGER NOT NULL,
	data       BLOB NOT NULL,
	updated_at INTEGER NOT NULL
);

CREATE TABLE welcomes (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	convo_id   TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	epoch      INTEGER NOT NULL,
	data       BLOB NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX welcomes_convo ON welcomes (convo_id, id);
CREATE INDEX welcomes_created ON welcomes (created_at);

CREATE TABLE welcome_recipients (
	welcome_id    INTEGER NOT NULL REFERENCES welcomes (id) ON DELETE CASCADE,
	recipient_did TEXT NOT NULL,
	consumed_at   INTEGER,
	PRIMARY KEY (welcome_id, recipient_did)
);
CREATE INDEX welcome_recipients_did ON welcome_recipients (recipient_did);
CREATE INDEX welcome_recipients_consumed ON welcome_recipients (consumed_at) WHERE consumed_at IS NOT NULL;

CREATE TABLE key_packages (
	ref           TEXT PRIMARY KEY,
	owner_did     TEXT NOT NULL,
	device_id     TEXT NOT NULL DEFAULT '',
	cipher_suite  TEXT NOT NULL,
	data          BLOB NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	last_resort   INTEGER NOT NULL DEFAULT 0,
	consumed_at   INTEGER,
	used_in_convo TEXT
);
CREATE INDEX key_packages_available ON key_packages (owner_did, device_id, cipher_suite, created_at) WHERE consumed_at IS NULL;
CREATE INDEX key_packages_consumed ON key_packages (owner_did, consumed_at) WHERE consumed_at IS NOT NULL;
CREATE INDEX key_packages_expires ON key_packages (expires_at);

CREATE TABLE devices (
	owner_did     TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	name          TEXT NOT NULL,
	uuid          TEXT NOT NULL DEFAULT '',
	signature_key BLOB,
	registered_at INTEGER NOT NULL,
	last_seen_at  INTEGER NOT NULL,
	PRIMARY KEY (owner_did, device_id)
);
CREATE UNIQUE INDEX devices_uuid ON devices (owner_did, uuid) WHERE uuid <> '';

-- Minimal event rows: a reference, never ciphertext or a sender.
-- AUTOINCREMENT so a purged cursor is never reused.
CREATE TABLE events (
	cursor         INTEGER PRIMARY KEY AUTOINCREMENT,
	convo_id       TEXT NOT NULL,
	kind           TEXT NOT NULL,
	message_id     TEXT,
	epoch          INTEGER,
	created_bucket INTEGER NOT NULL
);
CREATE INDEX events_convo ON events (convo_id, cursor);
CREATE INDEX events_created ON events (created_bucket);

-- Highest cursor purged so far, so the retained horizon survives an empty
-- table.
CREATE TABLE event_horizon (
	id             INTEGER PRIMARY KEY CHECK (id = 1),
	purged_through INTEGER NOT NULL
);
INSERT INTO event_horizon (id, purged_through) VALUES (1, 0);

-- digest is SHA-256(caller DID, endpoint NSID, key): no DID in clear.
CREATE TABLE idempotency (
	digest       BLOB PRIMARY KEY,
	request_hash BLOB,
	response     BLOB NOT NULL,
	created_at   INTEGER NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_at);
