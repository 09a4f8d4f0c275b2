// A proof-of-work solver for cairn's X-Cairn-PoW stamps, in plain Node
// (node:crypto only), as a ts-mls client would carry it. See
// docs/rate-limiting.md, "Proof of work".
//
//   import { solveChallenge } from "./pow.mjs";
//   const stamp = solveChallenge(res.headers.get("x-cairn-pow-challenge"), myDid);
//   // retry the call with the header X-Cairn-PoW: stamp
//
// Run as a script it prints one stamp: node pow.mjs <did> "<challenge>".
import { createHash, randomBytes } from "node:crypto";

// parseChallenge reads "v1; bits=<n>; method=<nsid>; max-age=<s>".
export function parseChallenge(header) {
  const parts = String(header).split(";").map((p) => p.trim());
  if (parts[0] !== "v1") throw new Error(`unsupported challenge ${header}`);
  const kv = Object.fromEntries(parts.slice(1).map((p) => p.split("=", 2)));
  const bits = Number.parseInt(kv.bits, 10);
  if (!(bits >= 0 && bits <= 32) || !kv.method) throw new Error(`malformed challenge ${header}`);
  return { bits, method: kv.method, maxAge: Number.parseInt(kv["max-age"], 10) };
}

function leadingZeroBits(digest) {
  let n = 0;
  for (const b of digest) {
    if (b !== 0) return n + Math.clz32(b) - 24;
    n += 8;
  }
  return n;
}

// solve finds a stamp of bits for did and method, dated now.
export function solve(did, method, bits, now = Date.now()) {
  const nonce = randomBytes(16).toString("base64url");
  const prefix = `v1:${bits}:${Math.floor(now / 1000)}:${nonce}:`;
  const head = `cairn-pow v1\0${did}\0${method}\0`;
  for (let counter = 0; ; counter++) {
    const stamp = prefix + counter;
    const digest = createHash("sha256").update(head + stamp).digest();
    if (leadingZeroBits(digest) >= bits) return stamp;
  }
}

// solveChallenge answers a 428's X-Cairn-PoW-Challenge for did.
export function solveChallenge(header, did, now = Date.now()) {
  const { bits, method } = parseChallenge(header);
  return solve(did, method, bits, now);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [did, challenge] = process.argv.slice(2);
  process.stdout.write(solveChallenge(challenge, did) + "\n");
}
