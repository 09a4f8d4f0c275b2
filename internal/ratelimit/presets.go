package ratelimit

import "fmt"

// The NSIDs the presets name outside the blue.catbird.mls namespace: atproto
// account calls that reach the gateway when it fronts a PDS (through
// cairn_xrpc_proxy in development, or a reverse_proxy route an operator
// adds).
const (
	nsidCreateSession = "com.atproto.server.createSession"
	nsidCreateAccount = "com.atproto.server.createAccount"
	nsidUploadBlob    = "com.atproto.repo.uploadBlob"
)

// PresetZones returns a fresh copy of the documented zones of a preset.
// docs/rate-limiting.md lists the same table; keep them together.
//
//   - public: unauthenticated routes, per IP: 60/min, burst 6.
//   - edge: the XRPC route before authentication, per IP: login 5/min,
//     registration 3/hour, and a flood ceiling of 600/min, burst 60, that
//     caps the work an address can make the authenticator do.
//   - api: the XRPC route after authentication, per verified DID:
//     sendMessage 100/min, publishKeyPackage(s) 50/min, addMembers and
//     removeMember 10/min, createConvo 5/min, reportMember 5/min, block
//     checks (checkBlocks, getBlockStatus, handleBlockChange) 30/min, rejoin
//     and re-addition requests 60/hour, uploads 10/min, every other blue.catbird.mls method 200/min, and any other
//     XRPC method (the general API) 100/min.
func PresetZones(name string) ([]*Zone, error) {
	switch name {
	case "public":
		return []*Zone{
			{Name: "public_ip", Key: KeyIP, Rate: "60/1m", Burst: 6},
		}, nil
	case "edge":
		return []*Zone{
			{Name: "login", Key: KeyIP, Rate: "5/1m", MatchNSIDs: []string{nsidCreateSession}},
			{Name: "registration", Key: KeyIP, Rate: "3/1h", MatchNSIDs: []string{nsidCreateAccount, "blue.catbird.mls.registerDevice"}},
			{Name: "edge_ip", Key: KeyIP, Rate: "600/1m", Burst: 60},
		}, nil
	case "api":
		return []*Zone{
			{Name: "send_message", Key: KeyDID, Rate: "100/1m", MatchNSIDs: []string{"blue.catbird.mls.sendMessage"}},
			{Name: "publish_key_packages", Key: KeyDID, Rate: "50/1m", MatchNSIDs: []string{"blue.catbird.mls.publishKeyPackage", "blue.catbird.mls.publishKeyPackages"}},
			{Name: "membership", Key: KeyDID, Rate: "10/1m", MatchNSIDs: []string{"blue.catbird.mls.addMembers", "blue.catbird.mls.removeMember"}},
			{Name: "create_convo", Key: KeyDID, Rate: "5/1m", MatchNSIDs: []string{"blue.catbird.mls.createConvo"}},
			{Name: "report_member", Key: KeyDID, Rate: "5/1m", MatchNSIDs: []string{"blue.catbird.mls.reportMember"}},
			{Name: "block_checks", Key: KeyDID, Rate: "30/1m", MatchNSIDs: []string{"blue.catbird.mls.checkBlocks",
				"blue.catbird.mls.getBlockStatus", "blue.catbird.mls.handleBlockChange"}},
			{Name: "rejoin", Key: KeyDID, Rate: "60/1h", MatchNSIDs: []string{"blue.catbird.mls.requestRejoin", "blue.catbird.mls.rejoin",
				"blue.catbird.mls.readdition", "blue.catbird.mls.groupInfoRefresh"}},
			{Name: "upload", Key: KeyDID, Rate: "10/1m", MatchNSIDs: []string{nsidUploadBlob}},
			{Name: "mls_other", Key: KeyDID, Rate: "200/1m", MatchNSIDs: []string{"blue.catbird.mls.*"}, Otherwise: true},
			{Name: "general", Key: KeyDID, Rate: "100/1m", MatchPaths: []string{"/xrpc/*"}, Otherwise: true},
		}, nil
	default:
		return nil, fmt.Errorf("%w: unknown preset %q: want public, edge or api", ErrInvalidZone, name)
	}
}
