// Sign-In with Ethereum for JavaScript clients: the EIP-4361 message exactly as lunark/siwe.py
// renders it, and the EIP-55 address checksum it carries (with the Keccak-256 it needs: no
// dependency). Re-exported by protocol.js, so "@lunark/client/protocol" keeps every helper.

/**
 * The EIP-4361 message exactly as lunark/siwe.py `SiweMessage.to_text` renders it:
 * LF line ends, no trailing LF, the statement (recommended) on its own line between blank
 * lines; without a statement there are two blank lines between the address and "URI:".
 *
 * @param {object} fields
 * @param {string} fields.domain     e.g. location.host ("localhost:8080")
 * @param {string} fields.address    EIP-55 checksummed, as the wallet reports it
 * @param {string} [fields.statement] one line of ASCII, e.g. "Sign in to Lunark."
 * @param {string} fields.uri        e.g. location.origin
 * @param {number} fields.chainId
 * @param {string} fields.nonce      from GET /auth/nonce
 * @param {Date|string} [fields.issuedAt]    defaults to now
 * @param {Date|string} [fields.expirationTime]
 * @param {Date|string} [fields.notBefore]
 * @param {string} [fields.requestId]
 * @param {string[]} [fields.resources]
 * @returns {string}
 */
export function buildSiweMessage({
  domain, address, statement, uri, chainId, nonce, issuedAt = new Date(),
  expirationTime, notBefore, requestId, resources = [],
}) {
  const lines = [`${domain} wants you to sign in with your Ethereum account:`, address, ""];
  if (statement !== undefined && statement !== null) lines.push(statement);
  lines.push(
    "",
    `URI: ${uri}`,
    "Version: 1",
    `Chain ID: ${Number(chainId)}`,
    `Nonce: ${nonce}`,
    `Issued At: ${siweTime(issuedAt)}`,
  );
  if (expirationTime) lines.push(`Expiration Time: ${siweTime(expirationTime)}`);
  if (notBefore) lines.push(`Not Before: ${siweTime(notBefore)}`);
  if (requestId) lines.push(`Request ID: ${requestId}`);
  if (resources.length) lines.push("Resources:", ...resources.map((r) => `- ${r}`));
  return lines.join("\n");
}

/** RFC 3339 UTC as siwe.py writes it: whole seconds when there is no fraction, else milliseconds. */
function siweTime(value) {
  if (typeof value === "string") return value;
  return value.toISOString().replace(".000Z", "Z");
}

/** `personal_sign`'s first parameter: the UTF-8 bytes of `text` as 0x-hex. @param {string} text */
export function utf8ToHex(text) {
  const bytes = new TextEncoder().encode(text);
  let hex = "0x";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return hex;
}

// -- addresses ----------------------------------------------------------------------------------

/**
 * The EIP-55 checksummed form of an address. Wallets often report addresses in lowercase,
 * but an EIP-4361 message must carry the checksummed one.
 * @param {string} address  0x followed by 40 hex digits, any case
 */
export function toChecksumAddress(address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new TypeError(`Not an address: ${address}`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256Hex(new TextEncoder().encode(lower));
  let out = "0x";
  for (let i = 0; i < 40; i++) {
    out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  }
  return out;
}

// Keccak-256 (the original padding, as Ethereum uses it, not SHA3-256), on 64-bit BigInt lanes:
// slow but small, and only ever run on a 40-byte address.
const MASK64 = (1n << 64n) - 1n;
const ROUND_CONSTANTS = [
  0x0000000000000001n, 0x0000000000008082n, 0x800000000000808an, 0x8000000080008000n,
  0x000000000000808bn, 0x0000000080000001n, 0x8000000080008081n, 0x8000000000008009n,
  0x000000000000008an, 0x0000000000000088n, 0x0000000080008009n, 0x000000008000000an,
  0x000000008000808bn, 0x800000000000008bn, 0x8000000000008089n, 0x8000000000008003n,
  0x8000000000008002n, 0x8000000000000080n, 0x000000000000800an, 0x800000008000000an,
  0x8000000080008081n, 0x8000000000008080n, 0x0000000080000001n, 0x8000000080008008n,
];
// ROTATIONS[x][y]
const ROTATIONS = [
  [0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14],
];

function rotl(value, bits) {
  if (bits === 0) return value;
  const n = BigInt(bits);
  return ((value << n) | (value >> (64n - n))) & MASK64;
}

function keccakF(s) {
  for (let round = 0; round < 24; round++) {
    const c = [0, 1, 2, 3, 4].map((x) => s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20]);
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (let y = 0; y < 5; y++) s[x + 5 * y] ^= d;
    }
    const b = new Array(25);
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(s[x + 5 * y], ROTATIONS[x][y]);
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        s[x + 5 * y] = b[x + 5 * y] ^ (~b[((x + 1) % 5) + 5 * y] & MASK64 & b[((x + 2) % 5) + 5 * y]);
      }
    }
    s[0] ^= ROUND_CONSTANTS[round];
  }
}

/** Keccak-256 of bytes, as 64 hex digits. @param {Uint8Array} bytes */
export function keccak256Hex(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.ceil((bytes.length + 1) / rate) * rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const s = new Array(25).fill(0n);
  for (let offset = 0; offset < padded.length; offset += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let j = 7; j >= 0; j--) lane = (lane << 8n) | BigInt(padded[offset + i * 8 + j]);
      s[i] ^= lane;
    }
    keccakF(s);
  }
  let hex = "";
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 8; j++) hex += Number((s[i] >> BigInt(8 * j)) & 0xffn).toString(16).padStart(2, "0");
  }
  return hex;
}
