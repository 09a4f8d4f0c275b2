// verify-did.mjs checks a service's did:web document and its signatures
// with the reference atproto libraries (@atproto/common-web's DID document
// parsing, @atproto/xrpc-server's verifyJwt, @atproto/crypto's
// verifySignature), for the Go tests of the service identity.
//
// It reads one JSON request on stdin and writes one JSON response on stdout:
//
//   request:  {"doc": {…}, "did": "did:web:…", "endpoint": "https://…",
//              "jwt": "eyJ…", "aud": "did:…", "lxm": "nsid",
//              "signatures": [{"fragment": "#atproto_k…", "data": "base64",
//                              "sig": "base64"}]}
//   response: {"signing_key": "did:key:z…", "iss": "did:web:…",
//              "verified": ["#atproto", …]}
//
// Any check that fails exits non-zero with the reason on stderr.
import {
  getDid,
  getServiceEndpoint,
  getSigningDidKey,
  getVerificationMaterial,
  isValidDidDoc,
} from '@atproto/common-web'
import { verifySignature, parseDidKey, formatDidKey, parseMultikey } from '@atproto/crypto'
import { verifyJwt } from '@atproto/xrpc-server'

const readStdin = async () => {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

const fail = (msg) => {
  throw new Error(msg)
}

const didKeyOf = (material) => {
  if (material.type !== 'Multikey') fail(`unexpected key type ${material.type}`)
  const { jwtAlg, keyBytes } = parseMultikey(material.publicKeyMultibase)
  return formatDidKey(jwtAlg, keyBytes)
}

const main = async () => {
  const req = JSON.parse(await readStdin())
  const doc = req.doc
  if (!isValidDidDoc(doc)) fail('not a valid DID document')
  if (getDid(doc) !== req.did) fail(`document id ${getDid(doc)}, want ${req.did}`)
  const endpoint = getServiceEndpoint(doc, { id: '#atproto_mls', type: 'AtprotoMlsService' })
  if (endpoint !== req.endpoint) fail(`#atproto_mls endpoint ${endpoint}, want ${req.endpoint}`)
  const signingKey = getSigningDidKey(doc)
  if (!signingKey) fail('no #atproto signing key')
  parseDidKey(signingKey)
  const payload = await verifyJwt(req.jwt, req.aud, req.lxm, async (iss) => {
    if (iss !== req.did) fail(`token issued by ${iss}`)
    return signingKey
  })
  const verified = []
  for (const s of req.signatures ?? []) {
    const material = getVerificationMaterial(doc, s.fragment.replace(/^#/, ''))
    if (!material) fail(`no verification method ${s.fragment}`)
    const ok = await verifySignature(
      didKeyOf(material),
      new Uint8Array(Buffer.from(s.data, 'base64')),
      new Uint8Array(Buffer.from(s.sig, 'base64')),
    )
    if (!ok) fail(`the signature does not verify under ${s.fragment}`)
    verified.push(s.fragment)
  }
  process.stdout.write(JSON.stringify({ signing_key: signingKey, iss: payload.iss, verified }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`verify-did.mjs: ${err?.message ?? err}\n`)
  process.exit(1)
})
