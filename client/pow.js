// The proof of work a new room's hello carries when the server is busy.
//
// docs/protocol.md section 4.1: find a nonce (here an 8-byte little-endian
// counter) such that SHA-256(challenge || nonce) starts with `bits` zero bits.
// WebCrypto's digest costs a promise per hash, far too slow for millions of
// them, so this module has its own SHA-256 (FIPS 180-4), checked against
// WebCrypto by the browser tests. The search runs in slices of about
// SLICE_MS on the page's own thread, yielding between them so the page stays
// responsive. (A Worker would need a Trusted Types policy for its script URL,
// which the page's CSP, `trusted-types 'none'`, rightly forbids.)

const SLICE_MS = 25; // work between yields: well under a frame budget of 50 ms
const CHECK_EVERY = 1024; // hashes between looks at the clock
export const MAX_BITS = 32; // a server asking for more is refused: minutes of work or worse

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

/** One SHA-256 compression of the 16 words at w[0..15] into state (both Int32Array). */
function compress(state, w) {
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/** SHA-256 of a Uint8Array, as a Uint8Array of 32 bytes. */
export function sha256(bytes) {
  const padded = new Uint8Array(Math.ceil((bytes.length + 9) / 64) * 64);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  const bitLength = bytes.length * 8;
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const state = new Int32Array(INITIAL);
  const w = new Int32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(offset + i * 4);
    compress(state, w);
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setInt32(i * 4, state[i]);
  return out;
}

/** How many zero bits a digest starts with. */
export function leadingZeroBits(digest) {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** The 8-byte little-endian nonce for a counter. */
export function nonceBytes(counter) {
  const nonce = new Uint8Array(8);
  new DataView(nonce.buffer).setBigUint64(0, BigInt(counter), true);
  return nonce;
}

function swap32(x) {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}

/**
 * Try counters from `start` on, for at most `count` of them, or until the clock
 * passes `until` (ms, performance.now()). Returns {found, next}: the counter
 * that holds (or null), and the first counter not tried.
 *
 * challenge || nonce is 24 bytes, one block: words 0-3 are the challenge, 4-5
 * the nonce, then the padding and the length (192 bits).
 */
export function searchSome(challenge, bits, start, count, until = Infinity) {
  if (challenge.length !== 16) throw new Error("a challenge is 16 bytes");
  const fixed = new DataView(challenge.buffer, challenge.byteOffset, 16);
  const c0 = fixed.getInt32(0), c1 = fixed.getInt32(4), c2 = fixed.getInt32(8), c3 = fixed.getInt32(12);
  const w = new Int32Array(64);
  const state = new Int32Array(8);
  const high = bits >= 32 ? 0 : bits === 0 ? -1 : 0xffffffff >>> bits; // first word at most
  const second = bits <= 32 ? -1 : 0xffffffff >>> (bits - 32);
  const end = start + count;
  for (let counter = start; counter < end; counter++) {
    // compress() only writes w[16..63]: the block's first 16 words are set each time
    // because they are cheap, and the fill keeps the code obviously right.
    w[0] = c0;
    w[1] = c1;
    w[2] = c2;
    w[3] = c3;
    w[4] = swap32(counter % 2 ** 32);
    w[5] = swap32(Math.floor(counter / 2 ** 32));
    w[6] = 0x80000000 | 0;
    w.fill(0, 7, 15);
    w[15] = 192;
    state.set(INITIAL);
    compress(state, w);
    const first = state[0] >>> 0;
    if (bits === 0 || (first <= high && (bits <= 32 ? true : first === 0 && state[1] >>> 0 <= second))) {
      return { found: counter, next: counter + 1 };
    }
    if ((counter - start) % CHECK_EVERY === CHECK_EVERY - 1 && performance.now() >= until) {
      return { found: null, next: counter + 1 };
    }
  }
  return { found: null, next: end };
}

/**
 * Give the page a turn: input, rendering and timers run before the next slice.
 * scheduler.yield() (Chromium 129+) does exactly that without a timer's 4 ms
 * clamp; elsewhere a zero timer.
 */
function yieldToPage() {
  if (globalThis.scheduler && typeof globalThis.scheduler.yield === "function") return globalThis.scheduler.yield();
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Find the proof for a challenge: resolves to the nonce bytes, or to null if
 * `abandoned()` becomes true first (the socket closed). Runs in slices of
 * SLICE_MS with the page's event loop turning between them.
 */
export async function solve(challenge, bits, abandoned = () => false) {
  if (!(bits >= 0 && bits <= MAX_BITS)) throw new Error(`a proof of ${bits} bits is too much work`);
  let counter = 0;
  for (;;) {
    if (abandoned()) return null;
    const { found, next } = searchSome(challenge, bits, counter, Number.MAX_SAFE_INTEGER - counter, performance.now() + SLICE_MS);
    if (found !== null) return nonceBytes(found);
    counter = next;
    await yieldToPage();
  }
}
