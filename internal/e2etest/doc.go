// Package e2etest holds only tests: end-to-end runs of real clients against
// a real cairn-caddy process. mls_e2e_test.go drives the Node harness in
// test/mls, where three ts-mls clients publish key packages, build a group,
// exchange messages, remove a member and race two commits through the
// gateway with real atproto service-auth tokens.
package e2etest
