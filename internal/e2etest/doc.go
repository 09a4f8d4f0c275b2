// Package e2etest holds only tests: end-to-end runs of real clients against
// a real cairn-caddy process. mls_e2e_test.go drives the Node harness in
// test/mls, where three ts-mls clients publish key packages, build a group,
// exchange messages, remove a member and race two commits through the
// gateway with real atproto service-auth tokens. quickstart_test.go follows
// README.md's quick start as written: it runs the commands of its code
// blocks against Caddyfile.example and Caddyfile.dev and checks the answers
// the README promises.
package e2etest
