-- Devices and recovery (docs/devices.md): pending device additions,
-- the needs_rejoin flag, and one Welcome per key package.

-- A member row whose device lost its MLS state and must rejoin (by an
-- external commit or a re-addition). AddMembers may re-add a flagged
-- active row; RemoveMembers clears the flag.
ALTER TABLE members ADD COLUMN needs_rejoin INTEGER NOT NULL DEFAULT 0;

-- One Welcome per key package (so per device): a device reserves its
-- package for the Welcome it is processing (validateWelcome, by the
-- Welcome's digest) and uses it when it confirms the join.
ALTER TABLE key_packages ADD COLUMN welcome_digest BLOB;
ALTER TABLE key_packages ADD COLUMN welcome_reserved_until INTEGER;
ALTER TABLE key_packages ADD COLUMN welcome_used_at INTEGER;

-- A device waiting to be added to a conversation by one of its members.
-- It names the device to add and nothing about who asked; claimed_by is
-- the account holding the 60-second claim, kept only while the row lives
-- (completion deletes it). created_at is bucketed like every activity
-- time; expires_at is when the retention worker deletes the row.
CREATE TABLE pending_device_additions (
	id              TEXT PRIMARY KEY,
	convo_id        TEXT NOT NULL REFERENCES convos (id) ON DELETE CASCADE,
	user_did        TEXT NOT NULL,
	device_id       TEXT NOT NULL DEFAULT '',
	rejoin          INTEGER NOT NULL DEFAULT 0,
	key_package_ref TEXT NOT NULL DEFAULT '',
	status          TEXT NOT NULL,
	claimed_by      TEXT NOT NULL DEFAULT '',
	claimed_until   INTEGER,
	created_at      INTEGER NOT NULL,
	expires_at      INTEGER NOT NULL,
	UNIQUE (convo_id, user_did, device_id)
);
CREATE INDEX pending_device_additions_expires ON pending_device_additions (expires_at);
CREATE INDEX pending_device_additions_device ON pending_device_additions (user_did, device_id);
