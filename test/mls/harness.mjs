// harness.mjs holds what a scenario script of this harness needs besides
// its own steps: XRPC calls with fresh atproto service-auth tokens, members
// with their keypairs and key packages, padded application messages, and
// the line protocol the Go driver reads (see README.md).
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { createApplicationMessage, createCommit, defaultCapabilities, encodeMlsMessage, generateKeyPackage } from 'ts-mls'

export const SUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'
export const NS = 'blue.catbird.mls.'
// gateway is the base URL every call goes to; useGateway moves a scenario
// to another gateway (e2e.mjs's restore phase).
export let gateway = process.env.CAIRN_GATEWAY
export const useGateway = (url) => {
  gateway = url
}
export const serviceDid = process.env.CAIRN_SERVICE_DID
if (!gateway || !serviceDid) {
  process.stderr.write('CAIRN_GATEWAY and CAIRN_SERVICE_DID are required\n')
  process.exit(2)
}

export const enc = new TextEncoder()
export const dec = new TextDecoder()
export const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
export const hex = (b) => Buffer.from(b).toString('hex')
export const b64 = (b) => Buffer.from(b).toString('base64')
export const fromB64 = (s) => new Uint8Array(Buffer.from(s, 'base64')) // accepts url-safe too
export const key = () => randomBytes(12).toString('hex') // idempotency keys

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
// msgId is a ULID-shaped id (26 Crockford base32 characters).
export const msgId = () => {
  let s = Date.now().toString(32).toUpperCase().padStart(10, '0')
  s = [...s].map((c) => CROCKFORD[parseInt(c, 32)]).join('')
  for (const b of randomBytes(16)) s += CROCKFORD[b % 32]
  return s
}

export class AssertionError extends Error {}
export const assert = (cond, msg) => {
  if (!cond) throw new AssertionError(msg)
}
const show = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x))
export const assertEq = (got, want, what) => assert(show(got) === show(want), `${what}: got ${show(got)}, want ${show(want)}`)

// xrpc calls nsid as member: a query (GET) when query is given, else a
// procedure (POST) with body, with a fresh token whose lxm is the method.
// It returns {status, body, request} and never throws on HTTP errors.
export const xrpc = async (member, nsid, { query, body } = {}) => {
  const jwt = await createServiceJwt({ keypair: member.keypair, iss: member.did, aud: serviceDid, lxm: NS + nsid })
  let url = `${gateway}/xrpc/${NS}${nsid}`
  const init = { headers: { authorization: `Bearer ${jwt}` } }
  if (query) {
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(query)) {
      for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item))
    }
    url += '?' + q.toString()
    init.method = 'GET'
  } else {
    init.method = 'POST'
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body ?? {})
  }
  const res = await fetch(url, init)
  const text = await res.text()
  let parsed
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = { raw: text }
  }
  return { status: res.status, body: parsed, request: `${init.method} ${NS}${nsid}${query ? '?' + url.split('?')[1] : ''} ${init.body ?? ''}` }
}

// must returns the body of a 200 response and fails the step otherwise,
// quoting the request (its first 600 characters) and the response.
export const must = (res, what) => {
  assert(res.status === 200, `${what}: HTTP ${res.status} ${JSON.stringify(res.body)}\n  request: ${res.request.slice(0, 600)}`)
  return res.body
}

// refused fails the step unless res is the XRPC error status/name.
export const refused = (res, status, name, what) => {
  assert(res.status === status && res.body.error === name, `${what}: got HTTP ${res.status} ${JSON.stringify(res.body)}, want ${status} ${name}`)
  return `${status} ${name}`
}

// ---- padded application messages ------------------------------------------

// sendMessage requires paddedSize == len(ciphertext), one of the lexicon's
// buckets: the encrypted content is padded (RFC 9420 §6.3.1) until the
// framed PrivateMessage is exactly a bucket long.
export const BUCKETS = [512, 1024, 2048, 4096, 8192, 16384, 24576, 32768]
const vlen = (n) => (n < 64 ? 1 : n < 16384 ? 2 : 4)
const AEAD_TAG = 16
const SENDER_DATA = 4 + 4 + 4 + AEAD_TAG // leaf_index, generation, reuse_guard, tag

// contentTarget is the padded content length that makes an MLSMessage of
// the group (with authenticated data aad) exactly bucket bytes long.
export const contentTarget = (groupId, aad, bucket) => {
  const fixed = 2 + 2 + vlen(groupId.length) + groupId.length + 8 + 1 + vlen(aad.length) + aad.length + vlen(SENDER_DATA) + SENDER_DATA
  const rest = bucket - fixed
  for (const l of [1, 2, 4]) {
    const ct = rest - l
    if (ct > AEAD_TAG && vlen(ct) === l) return ct - AEAD_TAG
  }
  return -1
}

// withPadding is state set to pad its next message's content to target.
export const withPadding = (state, target) => ({
  ...state,
  clientConfig: { ...state.clientConfig, paddingConfig: { kind: 'padUntilLength', padUntilLength: target } },
})

// paddedCommit makes a commit as member (proposals: extra) framed to the
// smallest bucket it fits, for sendMessage. An attempt that does not fit is
// discarded before it leaves this process.
export const paddedCommit = async (m, aad, extraProposals = []) => {
  const groupId = m.state.groupContext.groupId
  for (const bucket of BUCKETS) {
    const target = contentTarget(groupId, aad, bucket)
    const r = await createCommit({ state: withPadding(m.state, target), cipherSuite: m.impl }, { extraProposals, authenticatedData: aad })
    const bytes = encodeMlsMessage(r.commit)
    if (bytes.length === bucket) return { ...r, bytes }
  }
  throw new AssertionError('commit does not fit any bucket')
}

// sendRaw encrypts plaintext as member, framed to the smallest bucket it
// fits, posts it with sendMessage and returns the response with what was
// sent ({status, body, request, id, bytes, epoch, newState}), changing
// nothing in the member.
export const sendRaw = async (m, convoId, plaintext) => {
  const id = msgId()
  const aad = enc.encode(id)
  const groupId = m.state.groupContext.groupId
  const contentLen = vlen(plaintext.length) + plaintext.length + vlen(64) + 64
  const bucket = BUCKETS.find((b) => contentTarget(groupId, aad, b) >= contentLen)
  const r = await createApplicationMessage(withPadding(m.state, contentTarget(groupId, aad, bucket)), plaintext, m.impl, aad)
  const bytes = encodeMlsMessage({ privateMessage: r.privateMessage, wireformat: 'mls_private_message', version: 'mls10' })
  assertEq(bytes.length, bucket, `${m.name}'s padded application message length`)
  const epoch = Number(m.state.groupContext.epoch)
  const res = await xrpc(m, 'sendMessage', {
    body: { convoId, msgId: id, ciphertext: { $bytes: b64(bytes) }, epoch, paddedSize: bytes.length },
  })
  return { ...res, id, bytes, epoch, newState: r.newState }
}

// sendApp encrypts plaintext as member and posts it with sendMessage; it
// must be accepted. The member's state moves on. It returns the response
// body.
export const sendApp = async (m, convoId, plaintext) => {
  const { id, newState, ...res } = await sendRaw(m, convoId, plaintext)
  const body = must(res, `${m.name} sendMessage`)
  m.state = { ...newState, clientConfig: m.state.clientConfig }
  m.sent.add(id)
  return body
}

// ---- members ---------------------------------------------------------------

const PLC_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
const plcDid = () => 'did:plc:' + [...randomBytes(24)].map((b) => PLC_ALPHABET[b % 32]).join('')

// newKeyPackage is a key package whose basic credential is did, valid for a
// week.
export const newKeyPackage = (did, impl) => {
  const now = BigInt(Math.floor(Date.now() / 1000))
  return generateKeyPackage(
    { credentialType: 'basic', identity: enc.encode(did) },
    defaultCapabilities(),
    { notBefore: now - 3600n, notAfter: now + 7n * 86400n },
    [],
    impl,
  )
}

export const newMember = async (name, impl) => {
  const keypair = await Secp256k1Keypair.create()
  const did = plcDid()
  return { name, did, keypair, impl, kp: await newKeyPackage(did, impl), state: undefined, cursor: 0, sent: new Set() }
}

// identities are the credential identities of state's leaves, sorted.
export const identities = (state) =>
  state.ratchetTree
    .filter((n) => n && n.nodeType === 'leaf')
    .map((n) => dec.decode(n.leaf.credential.identity))
    .sort()

// leafIndexOf is the leaf index of the member whose credential is did in
// state's ratchet tree.
export const leafIndexOf = (state, did) => {
  for (let i = 0; i < state.ratchetTree.length; i += 2) {
    const n = state.ratchetTree[i]
    if (n && n.nodeType === 'leaf' && dec.decode(n.leaf.credential.identity) === did) return i / 2
  }
  throw new AssertionError(`${did} has no leaf`)
}

// readLine resolves to the next line the driver writes on stdin.
export const readLine = () =>
  new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin })
    rl.once('line', (line) => {
      resolve(line)
      rl.close()
    })
    rl.once('close', () => reject(new Error('stdin closed before the go-ahead')))
  })

// announce writes the members line and waits for the driver's go-ahead
// (their DID documents are published).
export const announce = async (members) => {
  out({ members: members.map((m) => ({ name: m.name, did: m.did, multibase: m.keypair.did().slice('did:key:'.length) })) })
  await readLine()
}

// steps runs named steps in order, reporting each; after a failure the
// rest are not run.
export const steps = () => {
  let failed = false
  const step = async (name, fn) => {
    if (failed) return
    const t0 = performance.now()
    try {
      const detail = await fn()
      out({ step: name, ok: true, ms: Math.round(performance.now() - t0), detail: detail ?? {} })
    } catch (err) {
      failed = true
      out({ step: name, ok: false, ms: Math.round(performance.now() - t0), error: err instanceof AssertionError ? err.message : String(err?.stack ?? err) })
    }
  }
  return { step, failed: () => failed }
}
