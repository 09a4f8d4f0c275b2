// mint.mjs mints atproto service-auth JWTs with the reference libraries
// (@atproto/crypto and @atproto/xrpc-server), for the Go interop tests in
// internal/atpauth.
//
// It reads one JSON request on stdin and writes one JSON response on stdout:
//
//   request:  {"keys":   [{"name": "a", "type": "k256" | "p256",
//                          "private": "hex" (optional: reuse a key)}],
//              "tokens": [{"key": "a", "iss": "did:…", "aud": "did:…",
//                          "lxm": "nsid" (optional), "iat": 123 (optional),
//                          "exp": 456 (optional)}]}
//   response: {"keys":   {"a": {"type": "k256", "jwtAlg": "ES256K",
//                                "did": "did:key:z…", "multibase": "z…",
//                                "private": "hex"}},
//              "tokens": ["eyJ…", …]}
//
// A key is generated unless its request carries the private key a previous
// run returned, so a test can mint more tokens with a key it already
// published. Errors go to stderr with a non-zero exit code.
import { P256Keypair, Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'

const readStdin = async () => {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

const generate = async (type, priv) => {
  const opts = { exportable: true }
  switch (type) {
    case 'k256':
      return priv ? Secp256k1Keypair.import(priv, opts) : Secp256k1Keypair.create(opts)
    case 'p256':
      return priv ? P256Keypair.import(priv, opts) : P256Keypair.create(opts)
    default:
      throw new Error(`unknown key type ${JSON.stringify(type)}`)
  }
}

const main = async () => {
  const req = JSON.parse(await readStdin())
  const keypairs = new Map()
  const keys = {}
  for (const k of req.keys ?? []) {
    const kp = await generate(k.type, k.private)
    keypairs.set(k.name, kp)
    const did = kp.did()
    keys[k.name] = {
      type: k.type,
      jwtAlg: kp.jwtAlg,
      did,
      multibase: did.slice('did:key:'.length),
      private: Buffer.from(await kp.export()).toString('hex'),
    }
  }
  const tokens = []
  for (const t of req.tokens ?? []) {
    const keypair = keypairs.get(t.key)
    if (!keypair) throw new Error(`token names unknown key ${JSON.stringify(t.key)}`)
    tokens.push(
      await createServiceJwt({
        keypair,
        iss: t.iss,
        aud: t.aud,
        lxm: t.lxm ?? null,
        iat: t.iat,
        exp: t.exp,
      }),
    )
  }
  process.stdout.write(JSON.stringify({ keys, tokens }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`mint.mjs: ${err?.stack ?? err}\n`)
  process.exit(1)
})
