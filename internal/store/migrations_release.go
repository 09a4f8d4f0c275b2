//go:build !cairn_upgrade_test

package store

// testOnlyMigrations is empty in every shipped binary; see
// migrations_upgradetest.go.
var testOnlyMigrations []Migration
