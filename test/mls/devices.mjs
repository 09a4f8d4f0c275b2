// devices.mjs runs the device and recovery flows of docs/devices.md with
// real MLS clients (ts-mls, cipher suite
// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519) against a running
// cairn-caddy: registered devices whose MLS identity is did#device, a
// device that loses its state and rejoins by external commit, a second
// device added through the pending-addition flow, and a reinstalled device
// re-added by readdition. The Go test in internal/e2etest
// (TestDeviceRecoveryEndToEnd) starts the gateway and a PLC directory and
// drives it with the protocol of e2e.mjs (see README.md):
//
//   {"members": [{"name", "did", "multibase"}]}  then one line on stdin
//   {"step": "...", "ok": true|false, "ms": 12, "detail"|"error": ...}
//   {"done": true}
//
// Environment: CAIRN_GATEWAY, CAIRN_SERVICE_DID.
import { createHash, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import {
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  defaultCapabilities,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  processPrivateMessage,
  processPublicMessage,
} from 'ts-mls'
import { defaultClientConfig } from 'ts-mls/clientConfig.js'
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js'

const SUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'
const NS = 'blue.catbird.mls.'
const gateway = process.env.CAIRN_GATEWAY
const serviceDid = process.env.CAIRN_SERVICE_DID
if (!gateway || !serviceDid) {
  process.stderr.write('devices.mjs: CAIRN_GATEWAY and CAIRN_SERVICE_DID are required\n')
  process.exit(2)
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (b) => Buffer.from(b).toString('hex')
const std64 = (b) => Buffer.from(b).toString('base64')
const bytesOf = (s) => new Uint8Array(Buffer.from(s, 'base64')) // url-safe too
const idemKey = () => randomBytes(12).toString('hex')

class Refusal extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new Refusal(msg)
}
const same = (got, want, what) => {
  const j = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x))
  check(j(got) === j(want), `${what}: got ${j(got)}, want ${j(want)}`)
}

// ---- a device: an account's keypair, its device id, its MLS state --------

const PLC = 'abcdefghijklmnopqrstuvwxyz234567'
const newAccount = async (name) => ({
  name,
  did: 'did:plc:' + [...randomBytes(24)].map((b) => PLC[b % 32]).join(''),
  keypair: await Secp256k1Keypair.create(),
})

// device returns a device of account: its MLS identity is did#deviceId.
const device = (account, deviceId, impl) => ({
  account,
  deviceId,
  name: `${account.name}/${deviceId}`,
  mlsDid: `${account.did}#${deviceId}`,
  impl,
  state: undefined,
  packages: new Map(), // KeyPackageRef hex -> {publicPackage, privatePackage}
  cursor: 0, // highest seq processed
  own: new Set(), // msgIds it sent
})

// call makes one XRPC call as dev (token of its account, X-Device-ID of
// the device): a query with query, else a procedure with body. It returns
// {status, body}.
const call = async (dev, nsid, { query, body } = {}) => {
  const jwt = await createServiceJwt({ keypair: dev.account.keypair, iss: dev.account.did, aud: serviceDid, lxm: NS + nsid })
  const headers = { authorization: `Bearer ${jwt}`, 'x-device-id': dev.deviceId }
  let url = `${gateway}/xrpc/${NS}${nsid}`
  const init = { headers }
  if (query) {
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(query)) for (const item of [v].flat()) q.append(k, String(item))
    url += '?' + q
  } else {
    init.method = 'POST'
    headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body ?? {})
  }
  const res = await fetch(url, init)
  const text = await res.text()
  if (process.env.CAIRN_HARNESS_DEBUG) process.stderr.write(`${dev.name} ${nsid} -> ${res.status}\n`)
  let parsed
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = { raw: text }
  }
  return { status: res.status, body: parsed, what: `${dev.name} ${nsid}` }
}

const ok = (res) => {
  check(res.status === 200, `${res.what}: HTTP ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

const refused = (res, status, name) => {
  check(res.status === status && res.body.error === name, `${res.what}: HTTP ${res.status} ${JSON.stringify(res.body)}, want ${status} ${name}`)
  return `${status} ${name}`
}

// freshPackage makes a key package for the device, valid for a day, and
// remembers its private half by KeyPackageRef.
const freshPackage = async (dev) => {
  const now = BigInt(Math.floor(Date.now() / 1000))
  const kp = await generateKeyPackage(
    { credentialType: 'basic', identity: enc.encode(dev.mlsDid) },
    defaultCapabilities(),
    { notBefore: now - 3600n, notAfter: now + 86400n },
    [],
    dev.impl,
  )
  const ref = hex(await makeKeyPackageRef(kp.publicPackage, dev.impl.hash))
  dev.packages.set(ref, kp)
  const bytes = encodeMlsMessage({ keyPackage: kp.publicPackage, wireformat: 'mls_key_package', version: 'mls10' })
  return { ...kp, ref, b64: std64(bytes) }
}

const packageItems = async (dev, n) => {
  const items = []
  for (let i = 0; i < n; i++) {
    const kp = await freshPackage(dev)
    items.push({ keyPackage: kp.b64, cipherSuite: SUITE, expires: new Date(Date.now() + 12 * 3600e3).toISOString() })
  }
  return items
}

// register registers the device with n fresh key packages.
const register = async (dev, n = 2) => {
  const body = ok(
    await call(dev, 'registerDevice', {
      body: { deviceName: dev.name, deviceUUID: dev.deviceId, keyPackages: await packageItems(dev, n), signaturePublicKey: { $bytes: std64(randomBytes(32)).replace(/=+$/, '') } },
    }),
  )
  same(body.mlsDid, dev.mlsDid, `${dev.name} registerDevice mlsDid`)
  return body
}

// ---- messages --------------------------------------------------------------

// ulid is a 26-character msgId.
const ulid = () => {
  const A = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  let s = ''
  for (const b of randomBytes(26)) s += A[b % 32]
  return s
}

// padded frames a message of dev to exactly one of the padding buckets
// sendMessage takes (it refuses any other length): produce(state) makes
// the message on a copy of dev's state padded by ts-mls's padUntilLength,
// and the content length that reaches the bucket is found by bisection,
// each attempt discarded.
const BUCKETS = [1024, 2048, 4096, 8192]
const padded = async (dev, produce) => {
  for (const bucket of BUCKETS) {
    let lo = 0
    let hi = bucket
    while (lo <= hi) {
      const target = (lo + hi) >> 1
      const st = { ...dev.state, clientConfig: { ...dev.state.clientConfig, paddingConfig: { kind: 'padUntilLength', padUntilLength: target } } }
      const f = await produce(st)
      if (f.bytes.length === bucket) return f
      if (f.bytes.length < bucket) lo = target + 1
      else hi = target - 1
    }
  }
  throw new Refusal(`${dev.name}: no padding frames the message to a bucket`)
}

// post sends framed bytes of dev's current epoch with sendMessage.
const post = async (dev, convoId, id, bytes) =>
  ok(
    await call(dev, 'sendMessage', {
      body: { convoId, msgId: id, ciphertext: { $bytes: std64(bytes).replace(/=+$/, '') }, epoch: Number(dev.state.groupContext.epoch), paddedSize: bytes.length },
    }),
  )

// say encrypts text as dev and sends it.
const say = async (dev, convoId, text) => {
  const id = ulid()
  const aad = enc.encode(id)
  const f = await padded(dev, async (st) => {
    const r = await createApplicationMessage(st, enc.encode(text), dev.impl, aad)
    return { r, bytes: encodeMlsMessage({ privateMessage: r.privateMessage, wireformat: 'mls_private_message', version: 'mls10' }) }
  })
  const body = await post(dev, convoId, id, f.bytes)
  dev.state = { ...f.r.newState, clientConfig: dev.state.clientConfig }
  dev.own.add(id)
  return { msgId: id, seq: body.seq }
}

// rekey commits an update of dev's own path (no proposals) through
// sendMessage, moving the group to the next epoch.
const rekey = async (dev, convoId) => {
  const id = ulid()
  const f = await padded(dev, async (st) => {
    const r = await createCommit({ state: st, cipherSuite: dev.impl }, { authenticatedData: enc.encode(id) })
    return { r, bytes: encodeMlsMessage(r.commit) }
  })
  await post(dev, convoId, id, f.bytes)
  dev.state = { ...f.r.newState, clientConfig: dev.state.clientConfig }
  dev.own.add(id)
}

// catchUp reads the conversation after dev's cursor and applies it:
// commits (private, or an external commit's public message) advance its
// state, application messages are decrypted. It returns the texts.
const catchUp = async (dev, convoId) => {
  const texts = []
  const body = ok(await call(dev, 'getMessages', { query: { convoId, sinceSeq: dev.cursor, limit: 100 } }))
  for (const m of body.messages) {
    dev.cursor = m.seq
    if (dev.own.has(m.id)) continue
    const [mls] = decodeMlsMessage(bytesOf(m.ciphertext.$bytes), 0)
    if (mls.wireformat === 'mls_public_message') {
      same(m.messageType, 'commit', `${dev.name}: messageType of public message seq ${m.seq}`)
      if (mls.publicMessage.content.epoch !== dev.state.groupContext.epoch) continue
      const r = await processPublicMessage(dev.state, mls.publicMessage, emptyPskIndex, dev.impl)
      dev.state = { ...r.newState, clientConfig: dev.state.clientConfig }
      continue
    }
    if (mls.privateMessage.epoch !== dev.state.groupContext.epoch) continue
    const r = await processPrivateMessage(dev.state, mls.privateMessage, emptyPskIndex, dev.impl)
    dev.state = { ...r.newState, clientConfig: dev.state.clientConfig }
    if (r.kind === 'applicationMessage') texts.push(dec.decode(r.message))
  }
  return texts
}

const identities = (state) =>
  state.ratchetTree
    .filter((n) => n && n.nodeType === 'leaf')
    .map((n) => dec.decode(n.leaf.credential.identity))
    .sort()

const leafOf = (state, mlsDid) => {
  for (let i = 0; i < state.ratchetTree.length; i += 2) {
    const n = state.ratchetTree[i]
    if (n && n.nodeType === 'leaf' && dec.decode(n.leaf.credential.identity) === mlsDid) return i / 2
  }
  throw new Refusal(`${mlsDid} has no leaf`)
}

// resyncConfig makes joinGroupExternal's resync find the device's former
// leaf by its credential (did#device): a device that lost its state lost
// its signature key too, which is what ts-mls compares by default.
const resyncConfig = {
  ...defaultClientConfig,
  keyPackageEqualityConfig: {
    ...defaultClientConfig.keyPackageEqualityConfig,
    compareKeyPackageToLeafNode: (kp, leaf) => Buffer.from(kp.leafNode.credential.identity).equals(Buffer.from(leaf.credential.identity)),
  },
}

// rejoinExternally makes dev's external commit (resync) from a GroupInfo,
// with a fresh key package.
const rejoinExternally = async (dev, groupInfoB64) => {
  const [gm] = decodeMlsMessage(bytesOf(groupInfoB64), 0)
  const kp = await freshPackage(dev)
  const { publicMessage, newState } = await joinGroupExternal(gm.groupInfo, kp.publicPackage, kp.privatePackage, true, dev.impl, undefined, resyncConfig)
  return { newState, bytes: encodeMlsMessage({ publicMessage, wireformat: 'mls_public_message', version: 'mls10' }) }
}

const groupInfoOf = async (dev) =>
  std64(encodeMlsMessage({ groupInfo: await createGroupInfoWithExternalPubAndRatchetTree(dev.state, [], dev.impl), wireformat: 'mls_group_info', version: 'mls10' }))

// joinByWelcome fetches, validates, processes and confirms dev's Welcome.
const joinByWelcome = async (dev, convoId) => {
  const w = ok(await call(dev, 'getWelcome', { query: { convoId } }))
  const bytes = bytesOf(w.welcome)
  const v = ok(await call(dev, 'validateWelcome', { body: { welcomeMessage: { $bytes: std64(bytes).replace(/=+$/, '') } } }))
  same([v.valid, v.reserved], [true, true], `${dev.name} validateWelcome`)
  const [wm] = decodeMlsMessage(bytes, 0)
  const ref = [...dev.packages.keys()].find((r) => wm.welcome.secrets.some((s) => hex(s.newMember) === r))
  check(ref, `${dev.name}: the Welcome names none of its key packages`)
  const kp = dev.packages.get(ref)
  dev.state = await joinGroup(wm.welcome, kp.publicPackage, kp.privatePackage, emptyPskIndex, dev.impl)
  same(ok(await call(dev, 'confirmWelcome', { body: { convoId, success: true } })).confirmed, true, `${dev.name} confirmWelcome`)
  // The package brought the device in: naming it again is refused.
  refused(await call(dev, 'validateWelcome', { body: { welcomeMessage: { $bytes: std64(bytes).replace(/=+$/, '') } } }), 409, 'KeyPackageAlreadyConsumed')
}

// addByClaim: claimer adds the pending addition's device with the key
// package its claim handed out, in one commit (removing the device's old
// leaf first when it has one), then completes the addition.
const addByClaim = async (claimer, convoId, pending, claim) => {
  const [km] = decodeMlsMessage(bytesOf(claim.keyPackage.keyPackage), 0)
  const proposals = []
  if (identities(claimer.state).includes(pending.deviceCredentialDid)) {
    proposals.push({ proposalType: 'remove', remove: { removed: leafOf(claimer.state, pending.deviceCredentialDid) } })
  }
  proposals.push({ proposalType: 'add', add: { keyPackage: km.keyPackage } })
  const r = await createCommit({ state: claimer.state, cipherSuite: claimer.impl }, { extraProposals: proposals, ratchetTreeExtension: true })
  const added = ok(
    await call(claimer, 'addMembers', {
      body: {
        convoId, idempotencyKey: idemKey(), didList: [pending.deviceCredentialDid],
        keyPackageHashes: [{ did: pending.deviceCredentialDid, hash: claim.keyPackage.keyPackageHash }],
        commit: std64(encodeMlsMessage(r.commit)), welcomeMessage: std64(encodeMlsMessage({ welcome: r.welcome, wireformat: 'mls_welcome', version: 'mls10' })),
      },
    }),
  )
  claimer.state = r.newState // its own commit, of the epoch it left, is skipped by catchUp
  const done = ok(await call(claimer, 'completePendingDeviceAddition', { body: { pendingAdditionId: pending.id, newEpoch: added.newEpoch } }))
  same(done.success, true, `${claimer.name} completePendingDeviceAddition`)
  ok(await call(claimer, 'updateGroupInfo', { body: { convoId, groupInfo: await groupInfoOf(claimer), epoch: added.newEpoch } }))
  return added.newEpoch
}

// ---- steps -----------------------------------------------------------------

let stopped = false
const step = async (name, fn) => {
  if (stopped) return
  const t0 = performance.now()
  try {
    emit({ step: name, ok: true, ms: Math.round(performance.now() - t0), detail: (await fn()) ?? {} })
  } catch (err) {
    stopped = true
    emit({ step: name, ok: false, ms: Math.round(performance.now() - t0), error: err instanceof Refusal ? err.message : String(err?.stack ?? err) })
  }
}

const goAhead = () =>
  new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin })
    rl.once('line', () => {
      resolve() // before close, whose event would reject
      rl.close()
    })
    rl.once('close', () => reject(new Error('stdin closed before the go-ahead')))
  })

const main = async () => {
  const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE))
  const [alice, bob] = await Promise.all([newAccount('alice'), newAccount('bob')])
  emit({ members: [alice, bob].map((a) => ({ name: a.name, did: a.did, multibase: a.keypair.did().slice('did:key:'.length) })) })
  await goAhead()

  const a1 = device(alice, 'a1', impl)
  const b1 = device(bob, 'b1', impl)
  const groupId = new Uint8Array(randomBytes(16))
  const convoId = hex(groupId)

  await step('register devices and form a group of two devices', async () => {
    await register(a1)
    await register(b1)
    const own = [...a1.packages.values()][0]
    a1.state = await createGroup(groupId, own.publicPackage, own.privatePackage, [], impl)
    ok(await call(a1, 'createConvo', { body: { groupId: convoId, cipherSuite: SUITE, idempotencyKey: idemKey() } }))
    const got = ok(await call(a1, 'getKeyPackages', { query: { dids: [bob.did], cipherSuite: SUITE } }))
    const [km] = decodeMlsMessage(bytesOf(got.keyPackages[0].keyPackage), 0)
    const r = await createCommit({ state: a1.state, cipherSuite: impl }, { extraProposals: [{ proposalType: 'add', add: { keyPackage: km.keyPackage } }], ratchetTreeExtension: true })
    ok(
      await call(a1, 'addMembers', {
        body: {
          convoId, idempotencyKey: idemKey(), didList: [b1.mlsDid], keyPackageHashes: [{ did: b1.mlsDid, hash: got.keyPackages[0].keyPackageHash }],
          commit: std64(encodeMlsMessage(r.commit)), welcomeMessage: std64(encodeMlsMessage({ welcome: r.welcome, wireformat: 'mls_welcome', version: 'mls10' })),
        },
      }),
    )
    a1.state = r.newState
    a1.cursor = 1
    await joinByWelcome(b1, convoId)
    b1.cursor = 1
    ok(await call(a1, 'updateGroupInfo', { body: { convoId, groupInfo: await groupInfoOf(a1), epoch: 1 } }))
    same(identities(b1.state), [a1.mlsDid, b1.mlsDid].sort(), "bob's view of the group")
    return { epoch: 1 }
  })

  await step('a device that lost its state rejoins by external commit, then reads new messages', async () => {
    const before = await say(a1, convoId, 'before bob lost his phone')
    b1.state = undefined // the app lost its MLS state
    b1.cursor = before.seq
    b1.own.clear()
    const gi = ok(await call(b1, 'getGroupInfo', { query: { convoId } }))
    const { newState, bytes: ext } = await rejoinExternally(b1, gi.groupInfo)
    b1.state = newState
    const r = ok(await call(b1, 'processExternalCommit', { body: { convoId, externalCommit: std64(ext), groupInfo: await groupInfoOf(b1), idempotencyKey: idemKey() } }))
    same(r.epoch, Number(newState.groupContext.epoch), 'processExternalCommit epoch')
    // The same commit again is not a second commit of the epoch.
    refused(await call(b1, 'processExternalCommit', { body: { convoId, externalCommit: std64(ext) } }), 409, 'StaleEpoch')
    same(await catchUp(a1, convoId), [], 'alice applied the external commit')
    same(a1.state.groupContext.epoch, b1.state.groupContext.epoch, "alice's epoch after bob's external commit")
    same(identities(a1.state), [a1.mlsDid, b1.mlsDid].sort(), "alice's view after bob's resync (his old leaf gone)")
    await say(a1, convoId, 'welcome back, bob')
    same(await catchUp(b1, convoId), ['welcome back, bob'], 'bob reads what follows his rejoin')
    await say(b1, convoId, 'thanks')
    same(await catchUp(a1, convoId), ['thanks'], 'alice reads bob after his rejoin')
    return { epoch: r.epoch, rejoinedAt: r.rejoinedAt }
  })

  const a2 = device(alice, 'a2', impl)
  await step('a second device of a member is added through the pending-addition flow', async () => {
    await register(a2, 2)
    const list = ok(await call(b1, 'getPendingDeviceAdditions', { query: { convoIds: [convoId] } })).pendingAdditions
    same(list.map((p) => [p.deviceCredentialDid, p.status]), [[a2.mlsDid, 'pending']], 'pending additions seen by bob')
    const pending = list[0]
    // Both member devices claim at once: exactly one gets it.
    const claims = await Promise.all([a1, b1].map((d) => call(d, 'claimPendingDeviceAddition', { body: { pendingAdditionId: pending.id } })))
    const bodies = claims.map(ok)
    same(bodies.map((c) => c.claimed).sort(), [false, true], 'claims: one won')
    const winner = bodies[0].claimed ? a1 : b1
    const loser = winner === a1 ? b1 : a1
    const claim = bodies[winner === a1 ? 0 : 1]
    same(bodies[loser === a1 ? 0 : 1].claimedBy, winner.account.did, 'the losing claimer is told who holds it')
    check(a2.packages.has(claim.keyPackage.keyPackageHash), "the claim hands out one of a2's packages")
    await addByClaim(winner, convoId, pending, claim)
    same(await catchUp(loser, convoId), [], `${loser.name} applied the commit`)
    await joinByWelcome(a2, convoId)
    a2.cursor = loser.cursor
    same(identities(a2.state), [a1.mlsDid, a2.mlsDid, b1.mlsDid].sort(), "a2's view of the group")
    await say(b1, convoId, 'hello, second device')
    same(await catchUp(a2, convoId), ['hello, second device'], 'a2 reads new messages')
    same(await catchUp(a1, convoId), ['hello, second device'], 'a1 reads them too')
    return { claimedBy: winner.name }
  })

  await step('a reinstalled device whose Welcome and external commit both fail is re-added by readdition', async () => {
    // b1 is reinstalled: no MLS state, no Welcome for it, fresh packages.
    b1.state = undefined
    b1.packages.clear()
    b1.own.clear()
    ok(await call(b1, 'publishKeyPackages', { body: { keyPackages: await packageItems(b1, 2) } }))
    // The packages of the old install have no private keys any more.
    const sync = ok(await call(b1, 'syncKeyPackages', { body: { localHashes: [...b1.packages.keys()], deviceId: b1.deviceId } }))
    check(sync.deletedCount >= 1, `syncKeyPackages deleted nothing: ${JSON.stringify(sync)}`)
    const welcomeTry = refused(await call(b1, 'getWelcome', { query: { convoId } }), 404, 'WelcomeNotFound')
    // The GroupInfo it can get is one epoch old: a member committed since
    // without publishing one (a1's key update), so its external commit loses.
    const gi = ok(await call(b1, 'getGroupInfo', { query: { convoId } }))
    await rekey(a1, convoId)
    const { bytes: ext } = await rejoinExternally(b1, gi.groupInfo)
    const externalTry = refused(await call(b1, 'processExternalCommit', { body: { convoId, externalCommit: std64(ext) } }), 409, 'StaleEpoch')
    same(ok(await call(b1, 'groupInfoRefresh', { body: { convoId } })).requested, true, 'groupInfoRefresh')
    const rd = ok(await call(b1, 'readdition', { body: { convoId } }))
    same([rd.requested, rd.activeMembers], [true, 2], 'readdition')
    const state = ok(await call(b1, 'validateDeviceState', { query: {} }))
    same([state.isValid, state.pendingRejoinRequests], [false, [convoId]], 'validateDeviceState while waiting')
    const pending = ok(await call(a1, 'getPendingDeviceAdditions', { query: {} })).pendingAdditions.find((p) => p.deviceCredentialDid === b1.mlsDid)
    check(pending, "alice does not see bob's re-addition")
    const claim = ok(await call(a1, 'claimPendingDeviceAddition', { body: { pendingAdditionId: pending.id } }))
    same(claim.claimed, true, 'alice claims the re-addition')
    check(b1.packages.has(claim.keyPackage.keyPackageHash), "the claim hands out one of the reinstalled device's fresh packages")
    await addByClaim(a1, convoId, pending, claim)
    await joinByWelcome(b1, convoId)
    b1.cursor = a1.cursor
    same(identities(b1.state), [a1.mlsDid, a2.mlsDid, b1.mlsDid].sort(), "the re-added device's view")
    same(await catchUp(a2, convoId), [], 'a2 applied the re-addition')
    same(ok(await call(b1, 'validateDeviceState', { query: {} })).pendingRejoinRequests, [], 'no rejoin pending once re-added')
    await say(a2, convoId, 'bob is back')
    same(await catchUp(b1, convoId), ['bob is back'], 'the re-added device reads new messages')
    return { welcome: welcomeTry, externalCommit: externalTry, activeMembers: rd.activeMembers }
  })

  emit({ done: true })
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n')
  process.exit(1)
})
