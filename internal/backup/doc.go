// Package backup writes and restores encrypted, backend-neutral archives of
// a cairn node: the delivery store as one consistent snapshot, the files of
// the data directory (the log-hash key, service identity keys, audit MAC
// key: whatever key files exist there) and, optionally, Caddy's certificate
// storage.
//
// An archive is a plaintext header (magic, salt, key check) followed by a
// DARE 2.0 stream (minio/sio, AES-256-GCM in authenticated 64 KiB
// packages) whose plaintext is a tar:
//
//	cairn-backup/header.json                format, schema version, tables and columns
//	cairn-backup/tables/<table>/<n>.ndjson  rows, one JSON array per line, in chunks
//	cairn-backup/files/<path>               data-directory files
//	cairn-backup/caddy/<path>               Caddy's storage, when asked for
//	cairn-backup/manifest.json              row counts, digests, counters
//
// Values are neutral (text, integer, bytes as base64, time as Unix
// microseconds, bool), so an archive taken from SQLite restores into
// PostgreSQL and back. The manifest comes last, since the counts and
// digests are known only once the tables are written; restore verifies the
// whole archive against it before it commits anything.
//
// This package holds no Caddy; the cairn-caddy commands and the cairn app's
// scheduled backup are its adapters.
package backup
