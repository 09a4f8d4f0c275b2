-- Push tokens (docs/push.md): one per registered device, sealed under the
-- push key kept outside the database (push-token.key in the data
-- directory), so a copy of the database alone does not reveal them. The
-- row names the device it wakes and the provider; it goes with the device
-- (ON DELETE CASCADE from devices, whatever deletes the device). registered_at is bucketed like every activity time.
CREATE TABLE push_tokens (
	owner_did     text NOT NULL,
	device_id     text NOT NULL,
	provider      text NOT NULL,
	sealed_token  bytea NOT NULL,
	registered_at timestamptz NOT NULL,
	PRIMARY KEY (owner_did, device_id),
	FOREIGN KEY (owner_did, device_id) REFERENCES devices (owner_did, device_id) ON DELETE CASCADE
);
