// Package delivery is the MLS (RFC 9420) delivery service of cairn: the
// XRPC handlers of the blue.catbird.mls methods and the rules a "dumb"
// delivery service enforces, over the slice of store.Store named Store.
//
// A Service implements http.Handler for /xrpc/<nsid>. Queries are GET with
// typed query parameters (arrays as repeated parameters); procedures are
// POST with a JSON body (Content-Type application/json, size-capped per
// method, 413 PayloadTooLarge beyond). Every refusal is an XRPC error body
// {"error":"Name","message":"…"}; mapError in errors.go is the one place
// domain and store errors become lexicon error names. The caller is read
// only from internal/caller, which the authentication layer fills.
//
// It is not an MLS client: it never decrypts. It parses the public MLS
// framing (internal/mlswire) of everything it stores instead of trusting
// declared fields: a message's group id must be its conversation and its
// epoch the declared one; an application message may not be ahead of the
// conversation; a commit advances the epoch by compare-and-swap, the loser
// of a race gets 409 StaleEpoch, and a Welcome is stored only with the
// winning commit. Key packages must verify, carry the caller's DID (or
// did#device of the caller's device) as their credential identity, and
// expire with their own lifetime (capped by Config.MaxKeyPackageLifetime).
//
// Every write is idempotent. Methods whose lexicon has an idempotency key
// require it (400 IdempotencyKeyRequired without one); sendMessage uses
// msgId. The key is scoped to the caller's DID and the method; a retry
// returns the recorded response and changes nothing; the same key with a
// different request is 422 IdempotencyKeyReused (422, not 409, so clients
// can tell it from the 409 of a lost epoch race).
//
// Nothing here logs: identities never leave the request. A server fault (a
// store outage, a bug) is handed to Config.OnServerError, whose adapter logs
// it once with the request ID; the error it gets carries the store's cause,
// which never names an identity.
//
// # DEVIATIONS
//
// Where this service differs from the lexicons, and why:
//
//   - getCommits: commitMessage.sender is required by the lexicon but never
//     returned. The store records no sender for messages or commits
//     (metadata minimisation); clients learn the committer from the MLS
//     framing. messageView has no sender in the lexicon, so nothing is
//     omitted there.
//   - createConvo, addMembers and publishKeyPackage: idempotencyKey is
//     required (the lexicons say optional). removeMember already requires
//     it; sendMessage uses msgId. leaveConvo has no key in its lexicon: it
//     accepts an optional idempotencyKey and otherwise derives one from the
//     conversation, target and commit. updateGroupInfo, confirmWelcome,
//     publishKeyPackages, syncKeyPackages, registerDevice (with
//     deviceUUID) and deleteDevice are naturally idempotent and take no key.
//   - createConvo: currentEpoch is "telemetry only" in the lexicon, but the
//     epoch is what commits are compared against and the server cannot
//     read it from the (encrypted) Welcome. It is taken from currentEpoch
//     when given, else 0 without a Welcome and 1 with one.
//   - addMembers: a welcomeMessage without a commit is refused (400): a
//     Welcome is only valid with the commit that adds its members, and it
//     is stored only if that commit wins its epoch.
//   - sendMessage: a ciphertext whose MLS content type is commit goes
//     through the epoch compare-and-swap like any commit (409 StaleEpoch
//     for the loser). paddedSize must equal the ciphertext length.
//     delivery "ephemeral" is accepted and stored like "persistent" (this
//     package has no live-only path).
//   - sendMessage: msgId is the idempotency key, and the stored message is
//     its record (no caller-keyed record links a sender to it): resending
//     the same bytes under a msgId replays the first answer, for any
//     member and after the sender left; other bytes under a taken msgId
//     are 422 IdempotencyKeyReused. An application message for a future epoch
//     is 409 EpochMismatch; a declared epoch that differs from the MLS
//     framing is 400 EpochMismatch; unparseable MLS or another group's id
//     is 400 InvalidMessage (not in the lexicon).
//   - getGroupInfo/updateGroupInfo use their lexicons' names NotFound and
//     Unauthorized (403) where other methods use ConvoNotFound/NotMember.
//     updateGroupInfo for an epoch the conversation has left is 409
//     StaleEpoch.
//   - getGroupInfo serves current members only; the lexicon says "current
//     or past". A GroupInfo carries the ratchet tree (the roster) and what
//     an external commit needs, so a removed member could learn who is in
//     the group and rejoin without approval. Past members get 403
//     Unauthorized.
//   - keyPackageHash: the lexicon says SHA-256 of the key package bytes;
//     getKeyPackages, getKeyPackageStatus and syncKeyPackages return RFC
//     9420's KeyPackageRef instead, which is what a Welcome names its
//     recipients by (the server checks a Welcome against it, and clients
//     match a Welcome to their key with it). On input (createConvo and
//     addMembers keyPackageHashes, syncKeyPackages localHashes) either form
//     is accepted, in any case: store.KeyPackageByHash and the sync resolve
//     a SHA-256 of the bytes to the package's KeyPackageRef.
//   - With Config.ProofOfWork, createConvo, sendChatRequest (once served)
//     and an account's first publishKeyPackage(s) or registerDevice
//     answer 428 ProofOfWorkRequired, InvalidProofOfWork,
//     ProofOfWorkExpired or ProofOfWorkReplayed without a good stamp, with
//     the X-Cairn-PoW-Challenge header; no lexicon names these errors
//     (docs/rate-limiting.md). With a rate limiter's large-group
//     modifiers, sendMessage and addMembers may answer 429
//     RateLimitExceeded.
//   - getKeyPackageStats: did may only be the caller's own DID (403
//     Unauthorized otherwise); inventory is private.
//   - getKeyPackageStatus: reserved is omitted (there is no reservation).
//   - registerDevice: the device id is deviceUUID when given, so packages
//     made before registration can name did#deviceUUID; autoJoinedConvos
//     is always empty and welcomeMessages absent (a new device is added by
//     a member's commit like any other).
//   - registerDeviceToken: platform android or web takes a Web Push
//     subscription as JSON for UnifiedPush (the lexicon names only hex
//     APNs tokens); deviceName is not stored; the device must be one the
//     caller's account registered (404 DeviceNotFound). Both push methods
//     answer 501 while the operator has push off.
//   - String-typed byte fields are decoded from standard or URL-safe
//     base64, padded or not. Responses use base64url without padding where
//     the lexicon says "Base64url" (getWelcome.welcome,
//     keyPackageRef.keyPackage) and standard padded base64 where it says
//     "Base64" (getGroupInfo.groupInfo). Lexicon "bytes" fields are
//     {"$bytes": base64} without padding.
//   - leaveConvo: a targetDid of another account needs an admin; without
//     targetDid every device of the caller's account leaves. A caller may
//     not leave as the last member (LastMember).
//   - getConvos lists conversations where any device of the caller's
//     account is an active member; the per-conversation methods then
//     require the caller's own device (or a device-less row of its DID).
//   - publishKeyPackages stores each package on its own (a bad one fails
//     alone, reported in errors); registerDevice registers the device and
//     then stores its packages, not in one transaction.
//   - requestRejoin and rejoin are one request; pending is always true and
//     AlreadyMember is never answered. The recovery methods need a device
//     (400 InvalidRequest) the account registered (403 Unauthorized).
//   - No realtime event goes out for new devices, rejoin requests,
//     readdition or groupInfoRefresh: the streams carry stored events
//     only. Members poll getPendingDeviceAdditions; groupInfoRefresh
//     checks the caller and reports activeMembers.
//   - claimPendingDeviceAddition claims per member device (claimedBy is
//     the account); the caller's own device is claimed=false; a device
//     without key packages is 400 KeyPackageNotFound.
//     completePendingDeviceAddition deletes the addition (a second call is
//     PendingAdditionNotFound) and refuses a newEpoch ahead of the
//     conversation.
//   - validateWelcome returns no groupId (it is encrypted in the Welcome);
//     a last-resort package is not reserved. getKeyPackageHistory never
//     returns consumedByDevice (no sender) nor consumedForConvoName.
//   - processExternalCommit, readdition, invalidateWelcome and
//     groupInfoRefresh use their lexicons' names (Unauthorized, NotFound,
//     ConversationNotFound, InvalidCommit); requestRejoin and rejoin
//     answer a non-member account 404 ConvoNotFound.
//   - getMessages: gapInfo describes the returned page's range only
//     (sinceSeq to lastSeq, at most 1000 missing sequence numbers), not the
//     whole conversation, and totalMessages is the number of sequence
//     numbers assigned so far, read from the counter.
//   - The social methods (issue 14; docs/moderation.md, docs/api.md):
//     reportView has no reporterDid (the server stores nothing about a
//     reporter; it is inside the sealed report) and no resolvedBy (the
//     audit log keeps it, hashed); reportMember.messageIds,
//     resolveReport.notes and warnMember.reason are accepted and not kept;
//     category must be a known value. getAdminStats answers only with a
//     convoId, only to its admins (NotAuthorized otherwise); server-wide
//     figures are on the operator API. warnMember keeps no row (an audit
//     event) and is open to moderators. The roster and policy methods,
//     reportMember, resolveReport, createInvite, revokeInvite and
//     processExternalCommit take an optional idempotencyKey, else derive
//     one from what makes the request unique. A non-admin add refused by
//     allowMemberAdd is NotAdmin. processExternalCommit with a psk in the
//     body joins with an invite (without one it is a rejoin, above), and
//     either way takes a real MLS external commit whose credential is the
//     caller; getGroupInfo serves a non-member that names a usable invite
//     by pskHash. A block relationship's createdAt, required by
//     checkBlocks and getBlockStatus, is 1970-01-01T00:00:00Z when the
//     source gave none (an AppView does not; a PDS record may not).
//     requireAdminApproval is stored but enforces nothing. getOptInStatus
//     gives optedInAt for the caller only. NotOptedIn refuses an add of an
//     account that has not opted in when Config.RequireOptIn.
//   - Chat requests (issue 14; docs/moderation.md#chat-requests):
//     sendChatRequest never answers "bypassed" (the server does not read
//     the follow graph; the bypass settings are stored and bypass nothing),
//     drops previewText unless Config.ChatPreviewSealer is set (then it is
//     stored sealed), makes 32-hex request ids (bucketed time then random)
//     instead of ULIDs, and takes an optional idempotencyKey (else the
//     recipient and a hash of the body). acceptChatRequest creates the
//     conversation of a 1:1 request with the request's id as its group id;
//     a Welcome must add a key package of the requester (InvalidMessage).
//     declineChatRequest answers RequestNotFound for a request not
//     pending; decline and block reasons and details are not kept.
//     getRequestCount names an unauthenticated call Unauthorized, its
//     lexicon's name.
package delivery
