// moderation.mjs runs the moderation scenario of issue 14 with real MLS
// clients (ts-mls) against a running cairn-caddy: roles the server
// enforces, reports sealed with HPKE (RFC 9180) to the admins' report keys
// that admins publish inside the group (docs/moderation.md), a refused
// non-admin removal, a Bluesky block (served by the driver's PDS
// stand-in) refusing an add, an invite created, redeemed by external commit
// and revoked, a chat request sent, accepted into a conversation and
// used, and an account an admin removed refused the invite that admits a
// leaver and admitted by one naming it. The Go test
// TestMLSModerationEndToEnd drives it with the same line protocol as
// e2e.mjs (README.md).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import {
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  emptyPskIndex,
  encodeMlsMessage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  processPrivateMessage,
  processPublicMessage,
} from 'ts-mls'
import {
  SUITE,
  announce,
  assert,
  assertEq,
  b64,
  dec,
  enc,
  fromB64,
  hex,
  identities,
  key,
  leafIndexOf,
  msgId,
  must,
  newKeyPackage,
  newMember,
  out,
  paddedCommit,
  refused,
  sendApp,
  steps,
  xrpc,
} from './harness.mjs'

// ---- sealed reports (docs/moderation.md, "Sealed reports") -----------------

const REPORT_KEY_TYPE = 'blue.catbird.mls.moderation#reportKey'
const REPORT_INFO = enc.encode('blue.catbird.mls report v1')
const keyId = (pub) => createHash('sha256').update(pub).digest('hex').slice(0, 16)
// The routing metadata the server stores is bound into every layer, so a
// blob cannot be replayed against another conversation, member or category.
const reportAAD = (convoId, reportedDid, category) => enc.encode(`${convoId}\n${reportedDid}\n${category}`)

// sealReport encrypts the report once under a fresh content key and wraps
// that key with HPKE (the group's cipher suite: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-128-GCM) to each admin's report key.
const sealReport = async (impl, adminKeys, report, aad) => {
  const cek = randomBytes(16)
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-128-gcm', cek, nonce)
  c.setAAD(aad)
  const ct = Buffer.concat([c.update(enc.encode(JSON.stringify(report))), c.final(), c.getAuthTag()])
  const recipients = []
  for (const pub of adminKeys) {
    const sealed = await impl.hpke.seal(await impl.hpke.importPublicKey(pub), cek, REPORT_INFO, aad)
    recipients.push({ kid: keyId(pub), enc: b64(sealed.enc), wrapped: b64(sealed.ct) })
  }
  return enc.encode(JSON.stringify({ v: 1, kem: 0x20, kdf: 1, aead: 1, recipients, nonce: b64(nonce), ct: b64(ct) }))
}

// openReport opens a sealed report with an admin's report key pair.
const openReport = async (impl, keys, blob, aad) => {
  const env = JSON.parse(dec.decode(blob))
  const slot = env.recipients.find((r) => r.kid === keyId(keys.pub))
  if (!slot) throw new Error('no slot for this key')
  const cek = await impl.hpke.open(keys.privateKey, fromB64(slot.enc), fromB64(slot.wrapped), REPORT_INFO, aad)
  const ct = fromB64(env.ct)
  const d = createDecipheriv('aes-128-gcm', cek, fromB64(env.nonce))
  d.setAAD(aad)
  d.setAuthTag(ct.subarray(ct.length - 16))
  return JSON.parse(dec.decode(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()])))
}

const newReportKeys = async (impl) => {
  const { privateKey, publicKey } = await impl.hpke.generateKeyPair()
  return { privateKey, pub: await impl.hpke.exportPublicKey(publicKey) }
}

// ---- receiving -------------------------------------------------------------

// sync fetches the messages after the member's cursor and processes them:
// its own are skipped, application messages decrypted into the returned
// list of {text}, commits applied.
const sync = async (m, convoId) => {
  const got = []
  const body = must(await xrpc(m, 'getMessages', { query: { convoId, sinceSeq: m.cursor, limit: 100 } }), `${m.name} getMessages`)
  for (const msg of body.messages) {
    m.cursor = msg.seq
    if (m.sent.has(msg.id)) continue
    const [mls] = decodeMlsMessage(fromB64(msg.ciphertext.$bytes), 0)
    if (mls.wireformat === 'mls_public_message') {
      if (mls.publicMessage.content.epoch < m.state.groupContext.epoch) continue
      const r = await processPublicMessage(m.state, mls.publicMessage, emptyPskIndex, m.impl)
      m.state = { ...r.newState, clientConfig: m.state.clientConfig }
      continue
    }
    if (mls.privateMessage.epoch < m.state.groupContext.epoch) continue
    const r = await processPrivateMessage(m.state, mls.privateMessage, emptyPskIndex, m.impl)
    m.state = { ...r.newState, clientConfig: m.state.clientConfig }
    if (r.kind === 'applicationMessage') got.push({ text: dec.decode(r.message) })
  }
  return got
}

const admins = async (m, convoId) => {
  const body = must(await xrpc(m, 'getConvos', { query: {} }), `${m.name} getConvos`)
  const convo = body.conversations.find((c) => c.groupId === convoId)
  return new Set(convo.members.filter((x) => x.isAdmin).map((x) => x.userDid))
}

// publishGroupInfo publishes m's GroupInfo (external public key and
// ratchet tree, what an external commit needs) for its current epoch.
const publishGroupInfo = async (m, convoId) => {
  const gi = encodeMlsMessage({ groupInfo: await createGroupInfoWithExternalPubAndRatchetTree(m.state, [], m.impl), wireformat: 'mls_group_info', version: 'mls10' })
  must(await xrpc(m, 'updateGroupInfo', { body: { convoId, groupInfo: b64(gi), epoch: Number(m.state.groupContext.epoch) } }), `${m.name} updateGroupInfo`)
  return gi
}

// joinByInvite makes m's external commit, with a fresh key package, from a
// GroupInfo (base64, as getGroupInfo serves it) and sends it with the
// invite's PSK. It returns the response and the state m has if accepted.
const joinByInvite = async (m, convoId, groupInfoB64, psk) => {
  const groupInfo = decodeMlsMessage(fromB64(groupInfoB64), 0)[0].groupInfo
  const kp = await newKeyPackage(m.did, m.impl)
  const j = await joinGroupExternal(groupInfo, kp.publicPackage, kp.privatePackage, false, m.impl)
  const commit = encodeMlsMessage({ publicMessage: j.publicMessage, wireformat: 'mls_public_message', version: 'mls10' })
  const res = await xrpc(m, 'processExternalCommit', { body: { convoId, externalCommit: b64(commit), psk: b64(psk) } })
  return { res, newState: j.newState }
}

// newInvite is a fresh invite secret and the pskHash createInvite takes.
const newInvite = () => {
  const psk = randomBytes(32)
  return { psk, pskHash: createHash('sha256').update(psk).digest('hex') }
}

// useCount is how many times the invite was redeemed, as listInvites shows
// the admin m.
const useCount = async (m, convoId, inviteId) => {
  const listed = must(await xrpc(m, 'listInvites', { query: { convoId } }), `${m.name} listInvites`)
  const inv = listed.invites.find((i) => i.inviteId === inviteId)
  assert(inv, `invite ${inviteId} not listed`)
  return inv.useCount
}

const main = async () => {
  const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE))
  const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']
  const [alice, bob, carol, dave, erin, frank] = await Promise.all(names.map((n) => newMember(n, impl)))
  const group = [alice, bob, carol, dave]
  await announce([alice, bob, carol, dave, erin, frank])
  const { step } = steps()
  const groupId = new Uint8Array(randomBytes(16))
  const convoId = hex(groupId)
  const reportKeys = {}
  let reportBlob, reportId
  const reportText = 'dave keeps posting slurs; see the last three messages'
  const category = 'harassment'

  await step('create a group of four with one commit and a Welcome', async () => {
    for (const m of group.slice(1)) {
      const bytes = encodeMlsMessage({ keyPackage: m.kp.publicPackage, wireformat: 'mls_key_package', version: 'mls10' })
      must(await xrpc(m, 'publishKeyPackage', { body: { keyPackage: b64(bytes), cipherSuite: SUITE, idempotencyKey: key() } }), `${m.name} publishKeyPackage`)
    }
    alice.state = await createGroup(groupId, alice.kp.publicPackage, alice.kp.privatePackage, [], impl)
    must(await xrpc(alice, 'createConvo', { body: { groupId: convoId, cipherSuite: SUITE, idempotencyKey: key() } }), 'alice createConvo')
    const kps = must(await xrpc(alice, 'getKeyPackages', { query: { dids: [bob.did, carol.did, dave.did], cipherSuite: SUITE } }), 'getKeyPackages')
    const proposals = kps.keyPackages.map((k) => ({ proposalType: 'add', add: { keyPackage: decodeMlsMessage(fromB64(k.keyPackage), 0)[0].keyPackage } }))
    const r = await createCommit({ state: alice.state, cipherSuite: impl }, { extraProposals: proposals, ratchetTreeExtension: true })
    const welcome = encodeMlsMessage({ welcome: r.welcome, wireformat: 'mls_welcome', version: 'mls10' })
    must(
      await xrpc(alice, 'addMembers', {
        body: {
          convoId,
          didList: [bob.did, carol.did, dave.did],
          commit: b64(encodeMlsMessage(r.commit)),
          welcomeMessage: b64(welcome),
          keyPackageHashes: kps.keyPackages.map((k) => ({ did: k.did, hash: k.keyPackageHash })),
          idempotencyKey: key(),
        },
      }),
      'alice addMembers',
    )
    alice.state = r.newState
    for (const m of group.slice(1)) {
      const w = must(await xrpc(m, 'getWelcome', { query: { convoId } }), `${m.name} getWelcome`)
      m.state = await joinGroup(decodeMlsMessage(fromB64(w.welcome), 0)[0].welcome, m.kp.publicPackage, m.kp.privatePackage, emptyPskIndex, impl)
      must(await xrpc(m, 'confirmWelcome', { body: { convoId, success: true } }), `${m.name} confirmWelcome`)
    }
    for (const m of group) m.cursor = 1 // the add commit (seq 1) is behind every member
    assertEq([...(await admins(bob, convoId))], [alice.did], 'the creator is the first and only admin')
    return { epoch: 1 }
  })

  await step('an admin promotes a member; the admins publish report keys in the group', async () => {
    // A member cannot promote; the admin can.
    const denied = refused(await xrpc(carol, 'promoteAdmin', { body: { convoId, targetDid: carol.did } }), 403, 'NotAdmin', 'carol promoteAdmin')
    const p = must(await xrpc(alice, 'promoteAdmin', { body: { convoId, targetDid: bob.did } }), 'alice promoteAdmin')
    assertEq(p.ok, true, 'promoteAdmin ok')
    const adminSet = await admins(carol, convoId)
    assertEq([...adminSet].sort(), [alice.did, bob.did].sort(), 'admins after the promotion')
    // Each admin publishes its report key in an end-to-end encrypted
    // application message the server cannot read.
    for (const a of [alice, bob]) {
      await sync(a, convoId)
      reportKeys[a.name] = await newReportKeys(impl)
      await sendApp(a, convoId, enc.encode(JSON.stringify({ $type: REPORT_KEY_TYPE, did: a.did, reportKey: b64(reportKeys[a.name].pub) })))
    }
    // carol learns the keys from the group and keeps those of members the
    // server lists as admins.
    const published = (await sync(carol, convoId)).map((x) => JSON.parse(x.text)).filter((x) => x.$type === REPORT_KEY_TYPE)
    carol.reportKeys = published.filter((x) => adminSet.has(x.did)).map((x) => fromB64(x.reportKey))
    assertEq(carol.reportKeys.length, 2, 'report keys carol accepted')
    return { promotedAt: p.promotedAt, memberPromote: denied }
  })

  await step('a member files a sealed report that only the admins can open', async () => {
    const report = { reporter: carol.did, reason: reportText, messageIds: ['m1', 'm2', 'm3'] }
    const aad = reportAAD(convoId, dave.did, category)
    reportBlob = await sealReport(impl, carol.reportKeys, report, aad)
    const r = must(
      await xrpc(carol, 'reportMember', { body: { convoId, reportedDid: dave.did, category, encryptedContent: { $bytes: b64(reportBlob) } } }),
      'carol reportMember',
    )
    reportId = r.reportId
    // A non-admin may not read reports, the reported member included.
    const daveRead = refused(await xrpc(dave, 'getReports', { query: { convoId } }), 403, 'NotAdmin', 'dave getReports')
    const got = must(await xrpc(alice, 'getReports', { query: { convoId } }), 'alice getReports')
    assertEq(got.reports.length, 1, 'reports for the admin')
    const view = got.reports[0]
    assertEq([view.id, view.reportedDid, view.status], [reportId, dave.did, 'pending'], 'reportView')
    assert(!('reporterDid' in view), 'the server names a reporter')
    // The server's copy is the submitted bytes, opaque: no plaintext, no
    // reporter in it.
    const stored = fromB64(view.encryptedContent.$bytes)
    assertEq(Buffer.from(stored).equals(Buffer.from(reportBlob)), true, "the server's copy equals the submitted bytes")
    const text = Buffer.from(stored).toString('latin1')
    assert(!text.includes('slurs') && !text.includes(carol.did), 'the stored blob holds plaintext or the reporter')
    // Both admins open it; a key that is not an admin's opens nothing.
    for (const a of [alice, bob]) {
      const opened = await openReport(impl, reportKeys[a.name], stored, aad)
      assertEq(opened, report, `${a.name} opens the report`)
    }
    const outsider = await newReportKeys(impl)
    let opened = true
    try {
      await openReport(impl, outsider, stored, aad)
    } catch {
      opened = false
    }
    assertEq(opened, false, 'a non-admin key opens the report')
    // Moved to another target, the blob no longer opens.
    let moved = true
    try {
      await openReport(impl, reportKeys.alice, stored, reportAAD(convoId, carol.did, category))
    } catch {
      moved = false
    }
    assertEq(moved, false, 'the report opens against other routing metadata')
    must(await xrpc(bob, 'resolveReport', { body: { reportId, action: 'no_action', notes: 'talked to dave' } }), 'bob resolveReport')
    const stats = must(await xrpc(alice, 'getAdminStats', { query: { convoId } }), 'alice getAdminStats')
    assertEq([stats.stats.totalReports, stats.stats.resolvedReports], [1, 1], 'admin stats')
    const carolStats = refused(await xrpc(carol, 'getAdminStats', { query: { convoId } }), 403, 'NotAuthorized', 'carol getAdminStats')
    return { reportId, sealedBytes: reportBlob.length, daveRead, carolStats }
  })

  await step("a non-admin's removal is refused", async () => {
    const res = refused(await xrpc(dave, 'removeMember', { body: { convoId, targetDid: carol.did, idempotencyKey: key() } }), 403, 'NotAdmin', 'dave removeMember')
    const still = must(await xrpc(carol, 'getEpoch', { query: { convoId } }), 'carol getEpoch')
    return { refused: res, epoch: still.currentEpoch }
  })

  // The driver seeded "frank blocks bob" in the PDS stand-in that frank's
  // and bob's DID documents name, before the go-ahead.
  await step('a block between two accounts stops their being added together', async () => {
    const blocked = refused(await xrpc(alice, 'addMembers', { body: { convoId, didList: [frank.did], idempotencyKey: key() } }), 403, 'BlockedByMember', 'alice adds frank, who blocks bob')
    const mutual = refused(
      await xrpc(frank, 'createConvo', { body: { groupId: hex(randomBytes(16)), cipherSuite: SUITE, initialMembers: [bob.did], idempotencyKey: key() } }),
      403,
      'MutualBlockDetected',
      'frank creates a conversation with bob',
    )
    const seen = must(await xrpc(alice, 'checkBlocks', { query: { dids: [bob.did, frank.did] } }), 'alice checkBlocks')
    assertEq(seen.blocks.map((b) => [b.blockerDid, b.blockedDid]), [[frank.did, bob.did]], 'alice sees the block touching her co-member')
    assert(seen.blocks[0].blockUri.startsWith(`at://${frank.did}/app.bsky.graph.block/`), 'the block record URI')
    // erin shares no conversation with either: she learns nothing.
    const stranger = must(await xrpc(erin, 'checkBlocks', { query: { dids: [bob.did, frank.did] } }), 'erin checkBlocks')
    assertEq(stranger.blocks, [], 'a stranger learns no block between others')
    // frank reports his block: verified, and he learns of no conversation
    // (he is in none with bob).
    const change = must(await xrpc(frank, 'handleBlockChange', { body: { blockerDid: frank.did, blockedDid: bob.did, action: 'created' } }), 'frank handleBlockChange')
    assertEq(change.affectedConvos, [], "frank learns nothing of bob's conversations")
    refused(await xrpc(bob, 'handleBlockChange', { body: { blockerDid: bob.did, blockedDid: frank.did, action: 'created' } }), 400, 'BlockNotVerified', 'bob claims a block he has not made')
    return { blocked, mutual, blockUri: seen.blocks[0].blockUri }
  })

  await step('an invite is created, redeemed by external commit and revoked', async () => {
    const { psk, pskHash } = newInvite()
    refused(await xrpc(carol, 'createInvite', { body: { convoId, pskHash } }), 403, 'Unauthorized', 'carol createInvite')
    const inv = must(await xrpc(alice, 'createInvite', { body: { convoId, pskHash, maxUses: 1 } }), 'alice createInvite')
    await sync(alice, convoId)
    await publishGroupInfo(alice, convoId)
    // erin, holding the invite link (the PSK), reads the GroupInfo by the
    // invite's hash and joins by external commit.
    refused(await xrpc(erin, 'getGroupInfo', { query: { convoId } }), 403, 'Unauthorized', 'erin getGroupInfo without the invite')
    const got = must(await xrpc(erin, 'getGroupInfo', { query: { convoId, pskHash } }), 'erin getGroupInfo')
    const j = await joinByInvite(erin, convoId, got.groupInfo, psk)
    const joined = must(j.res, 'erin processExternalCommit')
    erin.state = j.newState
    assertEq(joined.epoch, Number(erin.state.groupContext.epoch), "processExternalCommit epoch vs erin's")
    // alice applies erin's commit and they talk.
    await sync(alice, convoId)
    assertEq(alice.state.groupContext.epoch, erin.state.groupContext.epoch, "alice's epoch after erin's join")
    const hello = 'welcome, erin'
    await sendApp(alice, convoId, enc.encode(hello))
    const seen = must(await xrpc(erin, 'getMessages', { query: { convoId, sinceSeq: 0, limit: 100 } }), 'erin getMessages').messages
    const last = seen[seen.length - 1]
    const [mls] = decodeMlsMessage(fromB64(last.ciphertext.$bytes), 0)
    const r = await processPrivateMessage(erin.state, mls.privateMessage, emptyPskIndex, impl)
    assertEq(dec.decode(r.message), hello, 'erin decrypts after joining by invite')
    // Used up (maxUses 1): frank cannot redeem it; after revocation it is
    // listed as revoked and admits no one.
    refused(await xrpc(frank, 'getGroupInfo', { query: { convoId, pskHash } }), 403, 'Unauthorized', 'frank getGroupInfo with a used-up invite')
    must(await xrpc(alice, 'revokeInvite', { body: { inviteId: inv.inviteId } }), 'alice revokeInvite')
    const listed = must(await xrpc(alice, 'listInvites', { query: { convoId, includeRevoked: true } }), 'alice listInvites')
    assertEq([listed.invites[0].isRevoked, listed.invites[0].useCount], [true, 1], 'the revoked invite')
    const again = refused(await xrpc(alice, 'revokeInvite', { body: { inviteId: inv.inviteId, idempotencyKey: key() } }), 409, 'AlreadyRevoked', 'revoking twice')
    return { inviteId: inv.inviteId, epoch: joined.epoch, again }
  })
  // frank asks erin, with whom he shares no conversation, to chat. His
  // first words are held as ciphertext sealed (HPKE) to the init key of a
  // key package erin published; the server holds bytes it cannot read and
  // drops the plain-text preview (the operator has not enabled previews).
  await step('a chat request is sent, accepted and becomes a conversation where the two exchange a message', async () => {
    const publish = async (m, kp) => {
      const bytes = encodeMlsMessage({ keyPackage: kp.publicPackage, wireformat: 'mls_key_package', version: 'mls10' })
      must(await xrpc(m, 'publishKeyPackage', { body: { keyPackage: b64(bytes), cipherSuite: SUITE, idempotencyKey: key() } }), `${m.name} publishKeyPackage`)
    }
    const erinKp = await newKeyPackage(erin.did, impl)
    await publish(erin, erinKp)
    await publish(frank, frank.kp)
    const info = enc.encode('blue.catbird.mls chat request v1')
    const greeting = 'hi erin, frank here: can we talk?'
    const sealed = await impl.hpke.seal(await impl.hpke.importPublicKey(erinKp.publicPackage.initKey), enc.encode(greeting), info, enc.encode(erin.did))
    const held = new Uint8Array(512) // one padding bucket: [u16 length][ciphertext][zeros]
    new DataView(held.buffer).setUint16(0, sealed.ct.length)
    held.set(sealed.ct, 2)
    refused(await xrpc(frank, 'sendChatRequest', { body: { recipientDid: frank.did } }), 400, 'SelfRequest', 'frank asks himself')
    const sent = must(
      await xrpc(frank, 'sendChatRequest', {
        body: { recipientDid: erin.did, previewText: greeting, heldMessages: [{ ciphertext: { $bytes: b64(held) }, paddedSize: 512, ephPubKey: { $bytes: b64(sealed.enc) } }] },
      }),
      'frank sendChatRequest',
    )
    assertEq(sent.status, 'pending', 'the request waits for erin')
    refused(await xrpc(frank, 'sendChatRequest', { body: { recipientDid: erin.did } }), 409, 'DuplicateRequest', 'frank asks again while pending')
    assertEq(must(await xrpc(erin, 'getRequestCount', { query: {} }), 'erin getRequestCount').pendingCount, 1, "erin's badge")
    const listed = must(await xrpc(erin, 'listChatRequests', { query: {} }), 'erin listChatRequests').requests
    assertEq(
      listed.map((r) => [r.id, r.senderDid, r.messageCount, r.previewText ?? null]),
      [[sent.requestId, frank.did, 1, null]],
      'erin sees who asks, one held message, and no preview',
    )
    refused(await xrpc(bob, 'acceptChatRequest', { body: { requestId: sent.requestId } }), 404, 'RequestNotFound', 'bob answers a request not his')

    // erin accepts: her client creates the group with the request's id,
    // adds frank's key package, and hands the server the Welcome.
    const convoId = sent.requestId
    erin.state = await createGroup(Uint8Array.from(Buffer.from(convoId, 'hex')), erinKp.publicPackage, erinKp.privatePackage, [], impl)
    const kps = must(await xrpc(erin, 'getKeyPackages', { query: { dids: [frank.did], cipherSuite: SUITE } }), 'erin getKeyPackages')
    const add = kps.keyPackages.map((k) => ({ proposalType: 'add', add: { keyPackage: decodeMlsMessage(fromB64(k.keyPackage), 0)[0].keyPackage } }))
    const c = await createCommit({ state: erin.state, cipherSuite: impl }, { extraProposals: add, ratchetTreeExtension: true })
    erin.state = c.newState
    const welcome = encodeMlsMessage({ welcome: c.welcome, wireformat: 'mls_welcome', version: 'mls10' })
    const accepted = must(await xrpc(erin, 'acceptChatRequest', { body: { requestId: convoId, welcomeData: { $bytes: b64(welcome) } } }), 'erin acceptChatRequest')
    assertEq(accepted.convoId, convoId, 'the conversation takes the request id')
    const got = accepted.heldMessages[0]
    const gotBytes = fromB64(got.ciphertext.$bytes)
    const len = new DataView(gotBytes.buffer, gotBytes.byteOffset).getUint16(0)
    const opened = await impl.hpke.open(
      await impl.hpke.importPrivateKey(erinKp.privatePackage.initPrivateKey),
      fromB64(got.ephPubKey.$bytes),
      gotBytes.subarray(2, 2 + len),
      info,
      enc.encode(erin.did),
    )
    assertEq(dec.decode(opened), greeting, 'erin opens the held message')
    refused(await xrpc(erin, 'declineChatRequest', { body: { requestId: convoId } }), 404, 'RequestNotFound', 'declining an accepted request')

    // frank joins by the Welcome; they talk in the new conversation.
    const w = must(await xrpc(frank, 'getWelcome', { query: { convoId } }), 'frank getWelcome')
    frank.state = await joinGroup(decodeMlsMessage(fromB64(w.welcome), 0)[0].welcome, frank.kp.publicPackage, frank.kp.privatePackage, emptyPskIndex, impl)
    must(await xrpc(frank, 'confirmWelcome', { body: { convoId, success: true } }), 'frank confirmWelcome')
    const hello = 'welcome, frank'
    await sendApp(erin, convoId, enc.encode(hello))
    frank.cursor = 0
    const heard = await sync(frank, convoId)
    assertEq(heard.map((m) => m.text), [hello], 'frank decrypts erin in the accepted conversation')
    const reply = 'thanks, erin'
    await sendApp(frank, convoId, enc.encode(reply))
    erin.cursor = 0
    assertEq((await sync(erin, convoId)).map((m) => m.text), [reply], 'erin decrypts frank')
    return { convoId, epoch: Number(erin.state.groupContext.epoch) }
  })

  // Removal is not a leave (docs/moderation.md): an invite that does not
  // name an account an admin removed neither serves it the GroupInfo nor
  // admits its external commit, and the refusal uses nothing up; an
  // account that left by itself comes back through the same invite, and
  // one that an invite names comes back through that invite.
  await step('a removed account cannot come back through an untargeted invite; a leaver and a named invitee can', async () => {
    await sync(alice, convoId)
    // alice removes carol with a real Remove commit.
    const rm = await createCommit(
      { state: alice.state, cipherSuite: impl },
      { extraProposals: [{ proposalType: 'remove', remove: { removed: leafIndexOf(alice.state, carol.did) } }] },
    )
    must(
      await xrpc(alice, 'removeMember', { body: { convoId, targetDid: carol.did, idempotencyKey: key(), commit: b64(encodeMlsMessage(rm.commit)) } }),
      'alice removeMember carol',
    )
    alice.state = rm.newState
    // dave leaves by himself. A member cannot commit its own Remove
    // (RFC 9420 §12.2), so alice commits it, as a client seeing the leave.
    assertEq(must(await xrpc(dave, 'leaveConvo', { body: { convoId } }), 'dave leaveConvo').success, true, 'leaveConvo success')
    const id = msgId()
    const c = await paddedCommit(alice, enc.encode(id), [{ proposalType: 'remove', remove: { removed: leafIndexOf(alice.state, dave.did) } }])
    must(
      await xrpc(alice, 'sendMessage', {
        body: { convoId, msgId: id, ciphertext: { $bytes: b64(c.bytes) }, epoch: Number(alice.state.groupContext.epoch), paddedSize: c.bytes.length },
      }),
      "alice commits dave's Remove",
    )
    alice.state = { ...c.newState, clientConfig: alice.state.clientConfig }
    alice.sent.add(id)
    assertEq(identities(alice.state), [alice.did, bob.did, erin.did].sort(), "alice's view of the members after carol's removal and dave's leave")

    // One invite, naming nobody, as a link shared in the group would be.
    const open = newInvite()
    const inv = must(await xrpc(alice, 'createInvite', { body: { convoId, pskHash: open.pskHash, maxUses: 5 } }), 'alice createInvite (untargeted)')
    const gi = await publishGroupInfo(alice, convoId)
    const before = Number(alice.state.groupContext.epoch)

    // carol is not served the GroupInfo by the invite's hash, and her real
    // external commit, made from a copy of the GroupInfo a member passed
    // on, is refused without using the invite or moving the epoch.
    const carolInfo = refused(
      await xrpc(carol, 'getGroupInfo', { query: { convoId, pskHash: open.pskHash } }),
      403,
      'Unauthorized',
      "removed carol getGroupInfo by the untargeted invite's hash",
    )
    const carolTry = await joinByInvite(carol, convoId, b64(gi), open.psk)
    const carolJoin = refused(carolTry.res, 403, 'Unauthorized', 'removed carol processExternalCommit with the untargeted invite')
    assertEq(await useCount(alice, convoId, inv.inviteId), 0, 'uses of the untargeted invite after the refusal')
    assertEq(must(await xrpc(alice, 'getEpoch', { query: { convoId } }), 'alice getEpoch').currentEpoch, before, 'epoch after the refused external commit')

    // comeBack fetches the GroupInfo by the invite's hash as m and joins by
    // external commit; the use is counted and alice applies the commit.
    const comeBack = async (m, invite, inviteId, uses, what) => {
      const info = must(await xrpc(m, 'getGroupInfo', { query: { convoId, pskHash: invite.pskHash } }), `${m.name} getGroupInfo by ${what}`)
      const j = await joinByInvite(m, convoId, info.groupInfo, invite.psk)
      const back = must(j.res, `${m.name} processExternalCommit with ${what}`)
      m.state = j.newState
      assertEq(back.epoch, Number(m.state.groupContext.epoch), `processExternalCommit epoch vs ${m.name}'s`)
      assertEq(await useCount(alice, convoId, inviteId), uses, `uses of ${what} after ${m.name}`)
      await sync(alice, convoId)
      assertEq(alice.state.groupContext.epoch, m.state.groupContext.epoch, `alice's epoch after ${m.name}'s return`)
      return back.epoch
    }

    // dave, who left, comes back through the same invite and decrypts.
    const daveEpoch = await comeBack(dave, open, inv.inviteId, 1, 'the untargeted invite')
    const toDave = 'welcome back, dave'
    await sendApp(alice, convoId, enc.encode(toDave))
    assertEq((await sync(dave, convoId)).map((m) => m.text), [toDave], 'dave decrypts after returning by the untargeted invite')

    // An invite naming carol serves her the GroupInfo and admits her.
    const named = newInvite()
    const forCarol = must(
      await xrpc(alice, 'createInvite', { body: { convoId, pskHash: named.pskHash, targetDid: carol.did, maxUses: 1 } }),
      'alice createInvite naming carol',
    )
    await publishGroupInfo(alice, convoId)
    const carolEpoch = await comeBack(carol, named, forCarol.inviteId, 1, 'the invite naming her')
    await sync(dave, convoId)
    const toCarol = 'welcome back, carol'
    await sendApp(alice, convoId, enc.encode(toCarol))
    assertEq((await sync(carol, convoId)).map((m) => m.text), [toCarol], 'carol decrypts after returning by the invite naming her')
    assertEq((await sync(dave, convoId)).map((m) => m.text), [toCarol], "dave decrypts alice's message after carol's return")
    assertEq(identities(alice.state), [alice.did, bob.did, carol.did, dave.did, erin.did].sort(), "alice's view of the members at the end")
    return { carolInfo, carolJoin, daveEpoch, carolEpoch }
  })
  out({ done: true })
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n')
  process.exit(1)
})
