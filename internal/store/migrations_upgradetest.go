//go:build cairn_upgrade_test

package store

// testOnlyMigrations is the migration of the upgrade test's "newer"
// binary (built with -tags cairn_upgrade_test, never shipped): a schema
// change the older binary does not know, so that it must refuse the
// migrated database and rollback must restore the pre-upgrade backup. The
// statement is valid on both backends.
var testOnlyMigrations = []Migration{{
	Version: 9001,
	Name:    "9001_upgrade_test_probe.sql",
	SQL:     "CREATE TABLE upgrade_test_probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL)",
}}
