-- The lexicon's keyPackageHash is the SHA-256 of the key package bytes;
-- the server's ref is RFC 9420's KeyPackageRef. Clients may name a package
-- by either, so the SHA-256 (hex) is kept beside the ref and indexed per
-- owner. It is a digest of the public package the row already holds, so it
-- adds no information. SQLite has no SHA-256 function: the store fills the
-- column of existing rows in Go, in the same transaction (migrationStep).
ALTER TABLE key_packages ADD COLUMN data_sha256 TEXT NOT NULL DEFAULT '';
CREATE INDEX key_packages_sha256 ON key_packages (owner_did, data_sha256);
