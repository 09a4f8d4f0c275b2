-- Chat requests (docs/privacy.md, docs/moderation.md): a request from an
-- account to one it shares no conversation with. The row keeps what the
-- recipient needs to answer it: who asks (sender_did: the recipient
-- accepts, declines or blocks that account), whom, for which existing
-- group if any, and when it expires. The optional preview is stored only
-- when the operator allows previews, sealed under a key kept outside the
-- database (chat-preview.key in the data directory), and cleared when the
-- request is closed. Times are bucketed like every activity time.
CREATE TABLE chat_requests (
	id             text PRIMARY KEY,
	sender_did     text NOT NULL,
	recipient_did  text NOT NULL,
	status         text NOT NULL,
	group_id       text NOT NULL DEFAULT '',
	sealed_preview bytea,
	message_count  integer NOT NULL,
	created_at     timestamptz NOT NULL,
	expires_at     timestamptz NOT NULL,
	closed_at      timestamptz
);
-- One pending request per sender, recipient and group.
CREATE UNIQUE INDEX chat_requests_pending ON chat_requests (sender_did, recipient_did, group_id) WHERE status = 'pending';
CREATE INDEX chat_requests_recipient ON chat_requests (recipient_did, status, id);
CREATE INDEX chat_requests_expiry ON chat_requests (status, expires_at);

-- Held messages: ciphertext stored like messages, without a sender
-- column (the request names its sender once), deleted when the request
-- is closed.
CREATE TABLE chat_request_messages (
	request_id  text NOT NULL REFERENCES chat_requests (id) ON DELETE CASCADE,
	seq         integer NOT NULL,
	ciphertext  bytea NOT NULL,
	padded_size bigint NOT NULL,
	eph_pub_key bytea,
	PRIMARY KEY (request_id, seq)
);

-- Blocks of senders by recipients (blockChatSender): the keyed hash of
-- the pair, never the DIDs, so the table answers "is this pair blocked"
-- and nothing else.
CREATE TABLE chat_request_blocks (
	block_hash bytea PRIMARY KEY,
	created_at timestamptz NOT NULL
);

-- A recipient's chat request settings. No row: the defaults.
CREATE TABLE chat_request_settings (
	did                    text PRIMARY KEY,
	allow_followers_bypass boolean NOT NULL,
	allow_following_bypass boolean NOT NULL,
	auto_expire_days       integer NOT NULL
);
