-- The tamper-evident audit log (internal/audit) and account bans.

-- One row per audited event. seq is the chain position; mac chains the row
-- to the previous one under a key kept outside the database. metadata is
-- JSON text kept byte for byte, as the MAC covers it. ip is '' unless the
-- operator turned IP recording on (then a keyed hash or a truncated
-- address). No raw DID is ever written here: user-side actors and targets
-- are keyed hashes.
CREATE TABLE audit_log (
	seq        INTEGER PRIMARY KEY,
	at         INTEGER NOT NULL,
	event_type TEXT NOT NULL,
	actor      TEXT NOT NULL DEFAULT '',
	target     TEXT NOT NULL DEFAULT '',
	metadata   TEXT NOT NULL DEFAULT '{}',
	ip         TEXT NOT NULL DEFAULT '',
	mac        BLOB NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_type ON audit_log (event_type, seq);

-- The link of the last pruned row: verification starts from it.
CREATE TABLE audit_anchor (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq INTEGER NOT NULL,
	mac BLOB NOT NULL
);
INSERT INTO audit_anchor (id, seq, mac) VALUES (1, 0, X'');

-- Banned accounts, by the keyed hash of their DID only.
CREATE TABLE bans (
	did_hash   TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL
);
