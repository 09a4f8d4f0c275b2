-- The lexicon's keyPackageHash is the SHA-256 of the key package bytes;
-- the server's ref is RFC 9420's KeyPackageRef. Clients may name a package
-- by either, so the SHA-256 (hex) is kept beside the ref and indexed per
-- owner. It is a digest of the public package the row already holds, so it
-- adds no information.
ALTER TABLE key_packages ADD COLUMN data_sha256 text;
UPDATE key_packages SET data_sha256 = encode(sha256(data), 'hex');
ALTER TABLE key_packages ALTER COLUMN data_sha256 SET NOT NULL;
CREATE INDEX key_packages_sha256 ON key_packages (owner_did, data_sha256);
