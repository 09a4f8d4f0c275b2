-- The tamper-evident audit log (internal/audit) and account bans.

-- One row per audited event. seq is the chain position; mac chains the row
-- to the previous one under a key kept outside the database. metadata is
-- JSON text kept byte for byte (not jsonb, which would reorder it), as the
-- MAC covers it. ip is '' unless the operator turned IP recording on (then
-- a keyed hash or a truncated address). No raw DID is ever written here:
-- user-side actors and targets are keyed hashes.
CREATE TABLE audit_log (
	seq        BIGINT PRIMARY KEY,
	at         TIMESTAMPTZ NOT NULL,
	event_type TEXT NOT NULL,
	actor      TEXT NOT NULL DEFAULT '',
	target     TEXT NOT NULL DEFAULT '',
	metadata   TEXT NOT NULL DEFAULT '{}',
	ip         TEXT NOT NULL DEFAULT '',
	mac        BYTEA NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_type ON audit_log (event_type, seq);

-- The link of the last pruned row: verification starts from it. Appends
-- and prunes lock this row, which serialises the chain across nodes.
CREATE TABLE audit_anchor (
	id  INT PRIMARY KEY CHECK (id = 1),
	seq BIGINT NOT NULL,
	mac BYTEA NOT NULL
);
INSERT INTO audit_anchor (id, seq, mac) VALUES (1, 0, ''::bytea);

-- Banned accounts, by the keyed hash of their DID only.
CREATE TABLE bans (
	did_hash   TEXT PRIMARY KEY,
	created_at TIMESTAMPTZ NOT NULL
);
