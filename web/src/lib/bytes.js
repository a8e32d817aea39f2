// Byte helpers shared by the protocol code: encodings with the exact strictness the
// specifications ask for (SEXMAP.md: base64url without padding, canonical; XMAP.md: base64
// with padding), concatenation and constant-time comparison.

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** utf8 encodes a string as UTF-8 bytes. */
export function utf8(s) {
  return enc.encode(s);
}

/** fromUtf8 decodes UTF-8 bytes, throwing on malformed input. */
export function fromUtf8(b) {
  return dec.decode(b);
}

/** concat joins byte arrays. */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** toHex writes bytes as lower-case hex. */
export function toHex(b) {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}

/** fromHex reads hex (either case); it throws on odd length or a non-hex digit. */
export function fromHex(s) {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error('invalid hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

const STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const STD_REV = reverse(STD);
const URL_REV = reverse(URL);

function reverse(alphabet) {
  const r = new Int16Array(128).fill(-1);
  for (let i = 0; i < alphabet.length; i++) r[alphabet.charCodeAt(i)] = i;
  return r;
}

function encode64(b, alphabet, pad) {
  // Built in chunks: string concatenation of single characters is slow for message bodies.
  const chunks = [];
  let s = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    s += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63];
    if (s.length >= 16384) {
      chunks.push(s);
      s = '';
    }
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i] << 16;
    s += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (pad ? '==' : '');
  } else if (rest === 2) {
    const n = (b[i] << 16) | (b[i + 1] << 8);
    s += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + (pad ? '=' : '');
  }
  chunks.push(s);
  return chunks.join('');
}

// decode64 is strict: the exact alphabet, padding only where the variant has it, and zero
// trailing bits (so every byte string has exactly one encoding).
function decode64(s, rev, pad) {
  let body = s;
  if (pad) {
    if (s.length % 4 !== 0) throw new Error('invalid base64: length');
    if (s.endsWith('==')) body = s.slice(0, -2);
    else if (s.endsWith('=')) body = s.slice(0, -1);
  } else if (s.length % 4 === 1) {
    throw new Error('invalid base64: length');
  }
  const full = Math.floor(body.length / 4);
  const rest = body.length - full * 4;
  if (pad && rest === 1) throw new Error('invalid base64: padding');
  const out = new Uint8Array(full * 3 + (rest === 0 ? 0 : rest - 1));
  const val = (i) => {
    const c = body.charCodeAt(i);
    const v = c < 128 ? rev[c] : -1;
    if (v < 0) throw new Error('invalid base64: character');
    return v;
  };
  let o = 0;
  let i = 0;
  for (let q = 0; q < full; q++, i += 4) {
    const n = (val(i) << 18) | (val(i + 1) << 12) | (val(i + 2) << 6) | val(i + 3);
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  if (rest === 2) {
    const a = val(i);
    const b = val(i + 1);
    if (b & 15) throw new Error('invalid base64: trailing bits');
    out[o++] = (a << 2) | (b >> 4);
  } else if (rest === 3) {
    const a = val(i);
    const b = val(i + 1);
    const c = val(i + 2);
    if (c & 3) throw new Error('invalid base64: trailing bits');
    out[o++] = (a << 2) | (b >> 4);
    out[o++] = ((b & 15) << 4) | (c >> 2);
  }
  return out;
}

/** toBase64 is RFC 4648 base64 with padding (XMAP blobs). */
export function toBase64(b) {
  return encode64(b, STD, true);
}

/** fromBase64 decodes strict padded base64 (no white space; callers strip it). */
export function fromBase64(s) {
  return decode64(s, STD_REV, true);
}

/** toBase64url is RFC 4648 §5 without padding (SeXMAP ids and keys). */
export function toBase64url(b) {
  return encode64(b, URL, false);
}

/** fromBase64url decodes canonical unpadded base64url. */
export function fromBase64url(s) {
  return decode64(s, URL_REV, false);
}

/** equalBytes compares in time that depends only on the lengths (pins, tags). */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** u64be writes a counter (a non-negative safe integer or a BigInt) as 8 big-endian bytes. */
export function u64be(n) {
  const v = BigInt(n);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError('counter out of range');
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v, false);
  return out;
}

/** readU64be reads 8 big-endian bytes as a BigInt. */
export function readU64be(b, off = 0) {
  return new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, false);
}

/** wipe overwrites secret bytes that are no longer needed. */
export function wipe(...arrays) {
  for (const a of arrays) if (a) a.fill(0);
}

/** asciiLower lowers A–Z only, as the sealed-key format and address comparisons ask. */
export function asciiLower(s) {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}
