// SeXMAP/1, the client side (docs/SEXMAP.md): keys from the passphrase, pinning of the
// server's static key, the NK and XK handshakes over HTTP, and transport frames with explicit
// counters. The wire bytes are pinned by xmap/sexmap/testdata/vectors.json.
import { argon2id, argon2idAsync } from '@noble/hashes/argon2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { x25519 } from '@noble/curves/ed25519.js';
import {
  concat, utf8, toBase64url, fromBase64url, equalBytes, u64be, readU64be, wipe,
} from './bytes.js';
import { HandshakeState, encrypt, decrypt, keyPair, MAX_NONCE, TAGLEN } from './noise.js';

export const VERSION = 'SeXMAP/1';
export const CONTENT_TYPE = 'application/vnd.cryptomail.sexmap';
export const HEADER_SESSION = 'Sexmap-Session';
export const HEADER_HANDSHAKE = 'Sexmap-Handshake';
export const PATH_HANDSHAKE = '/sexmap/handshake';
export const PATH_TRANSPORT = '/sexmap';
export const PATH_WELL_KNOWN = '/.well-known/sexmap';
export const PROLOGUE = utf8(VERSION);
export const ID_SIZE = 16;
export const COUNTER_SIZE = 8;
export const MAX_ADDRESS_BYTES = 254;
/** The largest response body a client accepts, as the Go client does. */
export const MAX_RESPONSE_BYTES = 256 << 20;

export const FRAME = { NK_INIT: 0x01, NK_RESP: 0x02, XK_INIT: 0x11, XK_RESP: 0x12, XK_FINAL: 0x13, XK_OK: 0x14 };

export const LOGIN_KEY_LABEL = 'SeXMAP/1 login key';
export const SEAL_KEY_LABEL = 'CryptoMail/1 private key seal';
export const FAKE_SALT_SECRET_LABEL = 'SeXMAP/1 fake salt secret';

/** Argon2id parameters: t passes, m KiB, p lanes. */
export const DEFAULT_KDF_PARAMS = Object.freeze({ t: 3, m: 65536, p: 4 });
export const MIN_KDF_PARAMS = Object.freeze({ t: 2, m: 19456, p: 1 });
export const MAX_KDF_PARAMS = Object.freeze({ t: 16, m: 2097152, p: 16 });
export const MIN_SALT = 16;
export const MAX_SALT = 64;

/**
 * SexmapError is every failure of this layer. kind is one of:
 * 'status' (the server refused: status, code, retryAfter seconds), 'bad-response',
 * 'key-changed' (pinned, presented: base64url keys), 'counter-exhausted', 'network',
 * 'kdf' (parameters out of range, bad salt, empty passphrase).
 */
export class SexmapError extends Error {
  constructor(kind, message, fields = {}) {
    super(message);
    this.name = 'SexmapError';
    this.kind = kind;
    Object.assign(this, fields);
  }

  get unknownSession() {
    return this.kind === 'status' && this.status === 401;
  }

  get loginFailed() {
    return this.kind === 'status' && this.status === 403;
  }

  /** lockedOut: too many failed logins for this address or client (429 locked-out). */
  get lockedOut() {
    return this.kind === 'status' && this.status === 429 && this.code !== 'rate-limited';
  }

  /** rateLimited: too many handshakes or requests from this client IP (429 rate-limited). */
  get rateLimited() {
    return this.kind === 'status' && this.status === 429 && this.code === 'rate-limited';
  }

  get busy() {
    return this.kind === 'status' && this.status === 503;
  }
}

// ---- keys from the passphrase ----------------------------------------------------------

/** validateKDFParams throws unless every field is within [floor, ceiling] (SEXMAP.md). */
export function validateKDFParams({ t, m, p }) {
  const ok = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  if (!ok(t, MIN_KDF_PARAMS.t, MAX_KDF_PARAMS.t) || !ok(m, MIN_KDF_PARAMS.m, MAX_KDF_PARAMS.m) ||
      !ok(p, MIN_KDF_PARAMS.p, MAX_KDF_PARAMS.p)) {
    throw new SexmapError('kdf', `KDF parameters out of range: t=${t} m=${m}KiB p=${p} ` +
      `(allowed t 2..16, m 19456..2097152 KiB, p 1..16)`);
  }
}

function checkKDFInput(pw, salt) {
  if (pw.length === 0) throw new SexmapError('kdf', 'empty passphrase');
  if (salt.length < MIN_SALT || salt.length > MAX_SALT) {
    throw new SexmapError('kdf', 'salt must be 16 to 64 bytes');
  }
}

/** passphraseBytes is NFC(passphrase) as UTF-8, so that every client derives the same keys. */
export function passphraseBytes(passphrase) {
  return utf8(passphrase.normalize('NFC'));
}

function argonOpts({ t, m, p }) {
  // maxmem: room for the ceiling's 2 GiB; the parameter check bounds what a server can ask.
  return { t, m, p, dkLen: 32, version: 0x13, maxmem: 2 ** 31 + 2 ** 24 };
}

/** argon2Raw runs Argon2id without the parameter check (test vectors below the floor). */
export function argon2Raw(pw, salt, params) {
  return argon2id(pw, salt, argonOpts(params));
}

/** argon2Async is argon2Raw that yields to the event loop and reports progress (0..1). */
export function argon2Async(pw, salt, params, onProgress) {
  return argon2idAsync(pw, salt, { ...argonOpts(params), asyncTick: 50, onProgress });
}

/** keysFromIKM derives the login key pair and the sealing key from the Argon2id output. */
export function keysFromIKM(ikm) {
  const loginPriv = hkdf(sha256, ikm, undefined, utf8(LOGIN_KEY_LABEL), 32);
  const sealKey = hkdf(sha256, ikm, undefined, utf8(SEAL_KEY_LABEL), 32);
  return { loginPriv, loginPub: x25519.getPublicKey(loginPriv), sealKey };
}

/** deriveKeys is DeriveKeys of SEXMAP.md: checked parameters, NFC passphrase, Argon2id, HKDF. */
export function deriveKeys(passphrase, salt, params) {
  validateKDFParams(params);
  const pw = typeof passphrase === 'string' ? passphraseBytes(passphrase) : passphrase;
  checkKDFInput(pw, salt);
  const ikm = argon2Raw(pw, salt, params);
  const keys = keysFromIKM(ikm);
  wipe(ikm);
  if (typeof passphrase === 'string') wipe(pw);
  return keys;
}

/** deriveKeysAsync is deriveKeys for a worker: it yields and reports progress. */
export async function deriveKeysAsync(pw, salt, params, onProgress) {
  validateKDFParams(params);
  checkKDFInput(pw, salt);
  const ikm = await argon2Async(pw, salt, params, onProgress);
  const keys = keysFromIKM(ikm);
  wipe(ikm);
  return keys;
}

/** loginPublicKey is X25519(login_priv, 9). */
export function loginPublicKey(loginPriv) {
  return x25519.getPublicKey(loginPriv);
}

/** newSalt draws a fresh 16-byte salt. */
export function newSalt() {
  return crypto.getRandomValues(new Uint8Array(16));
}

/** serverSecret and fakeSalt are the server's made-up salts (SEXMAP.md "Fake salts"). A client
 * never needs them; they are here so the vectors are checked end to end. */
export function serverSecret(staticPrivate) {
  return hkdf(sha256, staticPrivate, undefined, utf8(FAKE_SALT_SECRET_LABEL), 32);
}

export function fakeSalt(secret, address) {
  return hmac(sha256, secret, concat(utf8('fake-salt'), utf8(address))).slice(0, 16);
}

// ---- server keys and pinning -----------------------------------------------------------

/** encodePublicKey writes a 32-byte key as 43 base64url characters. */
export function encodePublicKey(pub) {
  return toBase64url(pub);
}

/** decodePublicKey reads the well-known form (surrounding white space allowed). */
export function decodePublicKey(s) {
  let k;
  try {
    k = fromBase64url(s.trim());
  } catch {
    throw new SexmapError('bad-response', 'the server key is not 43 base64url characters');
  }
  if (k.length !== 32) throw new SexmapError('bad-response', 'the server key is not 32 bytes');
  return k;
}

/** samePin compares a pinned key with a presented one in constant time. */
export function samePin(pinned, presented) {
  return pinned.length === 32 && equalBytes(pinned, presented);
}

/**
 * A PinStore keeps one pinned key per server origin. The browser's is localStorage-backed
 * (keys are public values; the pin is what authenticates the server on later visits).
 */
export class PinStore {
  constructor(storage, prefix = 'cryptomail.pin.') {
    this.storage = storage;
    this.prefix = prefix;
  }

  get(origin) {
    const v = this.storage.getItem(this.prefix + origin);
    if (v === null) return null;
    try {
      return decodePublicKey(v);
    } catch {
      return null;
    }
  }

  set(origin, key) {
    this.storage.setItem(this.prefix + origin, encodePublicKey(key));
  }

  reset(origin) {
    this.storage.removeItem(this.prefix + origin);
  }
}

/** DEVICE_TOKEN_SIZE is the size of a device token. */
export const DEVICE_TOKEN_SIZE = 32;

/**
 * A DeviceStore keeps the device token the server issued after a login, per server origin
 * and lower-cased address, in localStorage. A token opens nothing by itself: it only lets a
 * correct login from this browser pass a lock-out of the address that others caused
 * (CLIENT.md, "Device tokens"), so it may sit in plain storage like the pin.
 */
export class DeviceStore {
  constructor(storage, prefix = 'cryptomail.device.') {
    this.storage = storage;
    this.prefix = prefix;
  }

  key(origin, address) {
    return `${this.prefix}${origin} ${address.replace(/[A-Z]/g, (c) => c.toLowerCase())}`;
  }

  get(origin, address) {
    const v = this.storage.getItem(this.key(origin, address));
    if (v === null) return null;
    try {
      const t = fromBase64url(v);
      return t.length === DEVICE_TOKEN_SIZE ? t : null;
    } catch {
      return null;
    }
  }

  set(origin, address, token) {
    this.storage.setItem(this.key(origin, address), toBase64url(token));
  }

  reset(origin, address) {
    this.storage.removeItem(this.key(origin, address));
  }
}

/** MemoryStorage is a Storage stand-in for tests and for browsers without localStorage. */
export class MemoryStorage {
  constructor() {
    this.m = new Map();
  }

  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }

  setItem(k, v) {
    this.m.set(k, String(v));
  }

  removeItem(k) {
    this.m.delete(k);
  }
}

// ---- HTTP ------------------------------------------------------------------------------

function trimBase(baseURL) {
  return baseURL.replace(/\/+$/, '');
}

async function readLimited(resp, limit) {
  const buf = new Uint8Array(await resp.arrayBuffer());
  if (buf.length > limit) throw new SexmapError('bad-response', `response larger than ${limit} bytes`);
  return buf;
}

async function statusError(resp) {
  let code = '';
  try {
    code = (await resp.text()).slice(0, 64).trim();
  } catch {
    // The status alone still says what happened.
  }
  const ra = parseInt(resp.headers.get('Retry-After') || '', 10);
  return new SexmapError('status', `server refused with ${resp.status} ${code}`,
    { status: resp.status, code, retryAfter: Number.isFinite(ra) && ra > 0 ? ra : 0 });
}

/** post sends one SeXMAP POST and returns [headers, body]; non-200 answers throw. */
async function post(fetchFn, url, extra, body, signal) {
  let resp;
  try {
    resp = await fetchFn(url, {
      method: 'POST',
      headers: { 'Content-Type': CONTENT_TYPE, ...extra },
      body,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
      signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new SexmapError('network', 'the server cannot be reached');
  }
  if (resp.status !== 200) throw await statusError(resp);
  const ct = (resp.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
  if (ct !== CONTENT_TYPE) throw new SexmapError('bad-response', `content type ${JSON.stringify(ct)}`);
  return [resp.headers, await readLimited(resp, MAX_RESPONSE_BYTES)];
}

/** fetchServerKey reads GET /.well-known/sexmap. */
export async function fetchServerKey(fetchFn, baseURL, signal) {
  let resp;
  try {
    resp = await fetchFn(trimBase(baseURL) + PATH_WELL_KNOWN, {
      cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer', signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new SexmapError('network', 'the server cannot be reached');
  }
  if (resp.status !== 200) throw await statusError(resp);
  const body = await readLimited(resp, 256);
  return decodePublicKey(new TextDecoder().decode(body));
}

function decodeID(s) {
  if (typeof s !== 'string' || s.length !== 22) return null;
  try {
    const id = fromBase64url(s);
    return id.length === ID_SIZE ? id : null;
  } catch {
    return null;
  }
}

function parseHandshake(body, want) {
  if (body.length < 1 || body[0] !== want) return null;
  const msg = body.subarray(1);
  switch (want) {
    case FRAME.NK_RESP:
    case FRAME.XK_RESP:
      return msg.length === 32 + TAGLEN ? msg : null;
    case FRAME.XK_OK:
      return msg.length === 0 ? msg : null;
    default:
      return null;
  }
}

// ---- frames ----------------------------------------------------------------------------

/** requestAD is sid ‖ counter; responseAD is sid ‖ counter ‖ "resp". */
export function requestAD(sid, counter) {
  return concat(sid, u64be(counter));
}

export function responseAD(sid, counter) {
  return concat(sid, u64be(counter), utf8('resp'));
}

/** sealFrame is counter (8, big-endian) ‖ ENCRYPT(k, counter, ad, plaintext). */
export function sealFrame(key, counter, ad, plaintext) {
  return concat(u64be(counter), encrypt(key, BigInt(counter), ad, plaintext));
}

/** openFrame returns [counter (BigInt), plaintext]; it throws when the frame is short or
 * does not authenticate. */
export function openFrame(key, body, adFor) {
  if (body.length < COUNTER_SIZE + TAGLEN) throw new SexmapError('bad-response', 'frame too short');
  const counter = readU64be(body);
  if (counter > MAX_NONCE) throw new SexmapError('bad-response', 'reserved counter');
  let pt;
  try {
    pt = decrypt(key, counter, adFor(counter), body.subarray(COUNTER_SIZE));
  } catch {
    throw new SexmapError('bad-response', 'frame does not authenticate');
  }
  return [counter, pt];
}

// ---- sessions --------------------------------------------------------------------------

const TOO_OLD_RETRIES = 3;

/** ClientSession is an established session: one POST per request, in parallel if wanted. */
export class ClientSession {
  constructor({ fetchFn, baseURL, id, idText, address, sendKey, recvKey, handshakeHash }) {
    this.fetchFn = fetchFn;
    this.url = trimBase(baseURL) + PATH_TRANSPORT;
    this.id = id;
    this.idText = idText;
    this.address = address;
    this.sendKey = sendKey;
    this.recvKey = recvKey;
    this.handshakeHash = handshakeHash;
    this.next = 0n;
  }

  takeCounter() {
    if (this.next > MAX_NONCE) throw new SexmapError('counter-exhausted', 'session counter exhausted');
    return this.next++;
  }

  /** roundTrip sends one XMAP document and returns the server's answer (bytes). A `409
   * too-old` answer was not run, so it is resent under a new counter (up to three times). */
  async roundTrip(request, { signal } = {}) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.roundTripOnce(request, signal);
      } catch (err) {
        if (err instanceof SexmapError && err.kind === 'status' && err.code === 'too-old' && attempt < TOO_OLD_RETRIES) {
          continue;
        }
        throw err;
      }
    }
  }

  async roundTripOnce(request, signal) {
    const counter = this.takeCounter();
    const frame = sealFrame(this.sendKey, counter, requestAD(this.id, counter), request);
    const [, body] = await post(this.fetchFn, this.url, { [HEADER_SESSION]: this.idText }, frame, signal);
    const [got, plaintext] = openFrame(this.recvKey, body, (c) => responseAD(this.id, c));
    if (got !== counter) throw new SexmapError('bad-response', 'response frame does not match the request');
    return plaintext;
  }
}

/**
 * dial runs a handshake and returns a ClientSession.
 *
 * options: baseURL, serverPub (the pinned key), fetchFn (window.fetch), and for a login
 * loginPriv (32 bytes), address and, if the client holds one, deviceToken (32 bytes, sent
 * after the address in XK message 3: address ‖ 0x00 ‖ token; SEXMAP.md, "Device tokens");
 * ephemeral (a private key) only for test vectors.
 */
export async function dial({ baseURL, serverPub, fetchFn, loginPriv = null, address = '', deviceToken = null, ephemeral = null, signal }) {
  if (!serverPub || serverPub.length !== 32) throw new SexmapError('bad-response', 'the server key must be 32 bytes');
  const xk = loginPriv !== null;
  let addrBytes = null;
  if (xk) {
    addrBytes = utf8(address);
    if (addrBytes.length < 1 || addrBytes.length > MAX_ADDRESS_BYTES) {
      throw new SexmapError('kdf', `the address must be 1 to ${MAX_ADDRESS_BYTES} bytes`);
    }
    if (deviceToken !== null) {
      if (deviceToken.length !== DEVICE_TOKEN_SIZE) throw new SexmapError('kdf', `a device token must be ${DEVICE_TOKEN_SIZE} bytes`);
      addrBytes = concat(addrBytes, Uint8Array.of(0), deviceToken);
    }
  }
  const base = trimBase(baseURL);
  const hs = new HandshakeState({
    pattern: xk ? 'XK' : 'NK',
    initiator: true,
    prologue: PROLOGUE,
    rs: serverPub,
    s: xk ? keyPair(loginPriv) : null,
    e: ephemeral ? { priv: ephemeral } : null,
  });
  const first = xk ? FRAME.XK_INIT : FRAME.NK_INIT;
  const second = xk ? FRAME.XK_RESP : FRAME.NK_RESP;
  const msg1 = concat(Uint8Array.of(first), hs.writeMessage());
  let hdr;
  let body;
  try {
    [hdr, body] = await post(fetchFn, base + PATH_HANDSHAKE, {}, msg1, signal);
  } catch (err) {
    if (err instanceof SexmapError && err.kind === 'status' && err.code === 'bad-handshake') {
      throw await explainBadHandshake(fetchFn, base, serverPub, err, signal);
    }
    throw err;
  }
  const msg2 = parseHandshake(body, second);
  if (!msg2) throw new SexmapError('bad-response', 'handshake message 2 is malformed');
  let payload;
  try {
    payload = hs.readMessage(msg2);
  } catch {
    throw new SexmapError('bad-response', 'handshake message 2 does not authenticate');
  }
  if (payload.length !== 0) throw new SexmapError('bad-response', 'handshake message 2 has a payload');
  if (xk) {
    const hid = hdr.get(HEADER_HANDSHAKE);
    if (!decodeID(hid)) throw new SexmapError('bad-response', `missing ${HEADER_HANDSHAKE} header`);
    const msg3 = concat(Uint8Array.of(FRAME.XK_FINAL), hs.writeMessage(addrBytes));
    [hdr, body] = await post(fetchFn, base + PATH_HANDSHAKE, { [HEADER_HANDSHAKE]: hid }, msg3, signal);
    if (!parseHandshake(body, FRAME.XK_OK)) throw new SexmapError('bad-response', 'malformed login answer');
  }
  if (!hs.done) throw new SexmapError('bad-response', 'handshake did not complete');
  const idText = hdr.get(HEADER_SESSION);
  const id = decodeID(idText);
  if (!id) throw new SexmapError('bad-response', `missing ${HEADER_SESSION} header`);
  const { c1, c2, h } = hs.result;
  return new ClientSession({
    fetchFn, baseURL: base, id, idText, address, sendKey: c1.k, recvKey: c2.k, handshakeHash: h,
  });
}

// A 400 bad-handshake on message 1 means the server could not read it: most often its key
// is no longer the pinned one. Say so when the well-known key differs.
async function explainBadHandshake(fetchFn, base, pinned, orig, signal) {
  let current;
  try {
    current = await fetchServerKey(fetchFn, base, signal);
  } catch {
    return orig;
  }
  if (!samePin(pinned, current)) {
    return new SexmapError('key-changed', 'the server key changed',
      { pinned: encodePublicKey(pinned), presented: encodePublicKey(current) });
  }
  return orig;
}
