-- Activity times are bucketed to 2 s by the store before they are written.

CREATE TABLE convos (
	id               text PRIMARY KEY,
	creator_did      text NOT NULL,
	cipher_suite     text NOT NULL,
	name             text NOT NULL DEFAULT '',
	description      text NOT NULL DEFAULT '',
	epoch            bigint NOT NULL,
	-- The per-conversation sequence counter. Writers bump it with
	-- UPDATE ... RETURNING, which row-locks the conversation until commit:
	-- that lock serialises seq, epoch and event cursor assignment.
	last_seq         bigint NOT NULL DEFAULT 0,
	created_at       timestamptz NOT NULL,
	last_activity_at timestamptz NOT NULL
);
CREATE INDEX convos_activity ON convos (last_activity_at DESC, id DESC);

CREATE TABLE members (
	convo_id   text NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	member_did text NOT NULL,
	user_did   text NOT NULL,
	device_id  text NOT NULL DEFAULT '',
	role       text NOT NULL,
	joined_at  timestamptz NOT NULL,
	left_at    timestamptz,
	PRIMARY KEY (convo_id, member_did)
);
CREATE INDEX members_user ON members (user_did, convo_id) WHERE left_at IS NULL;

-- No sender column, by design: the server never records who sent what.
-- No foreign key to convos either: a message is only ever inserted from the
-- row its counter bump returned, which proves the conversation exists, and
-- the FK check would key-share-lock the row this transaction just updated,
-- creating a MultiXact per message (measured: 3x slower appends).
CREATE TABLE messages (
	convo_id        text NOT NULL,
	seq             bigint NOT NULL,
	epoch           bigint NOT NULL,
	msg_id          text NOT NULL,
	ciphertext      bytea NOT NULL,
	padded_size     bigint NOT NULL,
	received_bucket timestamptz NOT NULL,
	expires_at      timestamptz,
	PRIMARY KEY (convo_id, seq),
	UNIQUE (convo_id, msg_id)
);
-- Ciphertext does not compress; skip the attempt.
ALTER TABLE messages ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
CREATE INDEX messages_received ON messages (received_bucket);
CREATE INDEX messages_expires ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- Marks which messages are commits, and for which epoch: one per epoch.
CREATE TABLE commits (
	convo_id text NOT NULL,
	epoch    bigint NOT NULL,
	seq      bigint NOT NULL,
	PRIMARY KEY (convo_id, epoch),
	UNIQUE (convo_id, seq),
	FOREIGN KEY (convo_id, seq) REFERENCES messages (convo_id, seq) ON DELETE CASCADE
);

CREATE TABLE group_infos (
	convo_id   text PRIMARY KEY REFERENCES convos (id) ON DELETE CASCADE,
	epoch      bigint NOT NULL,
	data       bytea NOT NULL,
	updated_at timestamptz NOT NULL
);

CREATE TABLE welcomes (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	convo_id   text NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	epoch      bigint NOT NULL,
	data       bytea NOT NULL,
	created_at timestamptz NOT NULL
);
CREATE INDEX welcomes_convo ON welcomes (convo_id, id);
CREATE INDEX welcomes_created ON welcomes (created_at);

CREATE TABLE welcome_recipients (
	welcome_id    bigint NOT NULL REFERENCES welcomes (id) ON DELETE CASCADE,
	recipient_did text NOT NULL,
	consumed_at   timestamptz,
	PRIMARY KEY (welcome_id, recipient_did)
);
CREATE INDEX welcome_recipients_did ON welcome_recipients (recipient_did);
CREATE INDEX welcome_recipients_consumed ON welcome_recipients (consumed_at) WHERE consumed_at IS NOT NULL;

CREATE TABLE key_packages (
	ref           text PRIMARY KEY,
	owner_did     text NOT NULL,
	device_id     text NOT NULL DEFAULT '',
	cipher_suite  text NOT NULL,
	data          bytea NOT NULL,
	created_at    timestamptz NOT NULL,
	expires_at    timestamptz NOT NULL,
	last_resort   boolean NOT NULL DEFAULT false,
	consumed_at   timestamptz,
	used_in_convo text
);
CREATE INDEX key_packages_available ON key_packages (owner_did, device_id, cipher_suite, created_at) WHERE consumed_at IS NULL;
CREATE INDEX key_packages_consumed ON key_packages (owner_did, consumed_at) WHERE consumed_at IS NOT NULL;
CREATE INDEX key_packages_expires ON key_packages (expires_at);

CREATE TABLE devices (
	owner_did     text NOT NULL,
	device_id     text NOT NULL,
	name          text NOT NULL,
	uuid          text NOT NULL DEFAULT '',
	signature_key bytea,
	registered_at timestamptz NOT NULL,
	last_seen_at  timestamptz NOT NULL,
	PRIMARY KEY (owner_did, device_id)
);
CREATE UNIQUE INDEX devices_uuid ON devices (owner_did, uuid) WHERE uuid <> '';

-- Minimal event rows: a reference, never ciphertext or a sender. The
-- identity is shared by all nodes; it is drawn while the conversation row is
-- locked, so within a conversation cursors follow commit order.
CREATE TABLE events (
	cursor         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	convo_id       text NOT NULL,
	kind           text NOT NULL,
	message_id     text,
	epoch          bigint,
	created_bucket timestamptz NOT NULL
);
CREATE INDEX events_convo ON events (convo_id, cursor);
CREATE INDEX events_created ON events (created_bucket);

-- Highest cursor purged so far, so the retained horizon survives an empty
-- table.
CREATE TABLE event_horizon (
	id             int PRIMARY KEY CHECK (id = 1),
	purged_through bigint NOT NULL
);
INSERT INTO event_horizon (id, purged_through) VALUES (1, 0);

-- digest is SHA-256(caller DID, endpoint NSID, key): no DID in clear.
-- response is NULL only inside the transaction that claims the key.
CREATE TABLE idempotency (
	digest       bytea PRIMARY KEY,
	request_hash bytea,
	response     bytea,
	created_at   timestamptz NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_at);
