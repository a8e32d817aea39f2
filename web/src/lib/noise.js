// The Noise Protocol Framework's handshake state machine (revision 34, §5), for the two
// patterns SeXMAP uses, with the 25519 / ChaChaPoly / SHA256 suite. The primitives are the
// audited @noble libraries; this file only sequences them exactly as the specification does,
// so it can be checked line by line against §5.1–§5.3 and §7.
import { x25519 } from '@noble/curves/ed25519.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { concat, utf8, wipe } from './bytes.js';

export const DHLEN = 32;
export const HASHLEN = 32;
export const TAGLEN = 16;
/** The highest nonce a CipherState may use: 2^64−1 is reserved (§5.1). */
export const MAX_NONCE = 0xfffffffffffffffen;

/** Patterns by name: pre-message tokens of the responder and the message token lists. */
export const PATTERNS = {
  NK: { pre: { responder: ['s'] }, messages: [['e', 'es'], ['e', 'ee']] },
  XK: { pre: { responder: ['s'] }, messages: [['e', 'es'], ['e', 'ee'], ['s', 'se']] },
};

/** nonce96 is ChaChaPoly's nonce for n: 32 zero bits then n little-endian (§12.3). */
export function nonce96(n) {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, BigInt(n), true);
  return out;
}

/** encrypt is the cipher function ENCRYPT(k, n, ad, plaintext) (§4.2). */
export function encrypt(k, n, ad, plaintext) {
  return chacha20poly1305(k, nonce96(n), ad).encrypt(plaintext);
}

/** decrypt is DECRYPT(k, n, ad, ciphertext); it throws when authentication fails. */
export function decrypt(k, n, ad, ciphertext) {
  return chacha20poly1305(k, nonce96(n), ad).decrypt(ciphertext);
}

/** dh is DH(key pair, public key); noble throws for a low-order point (all-zero output). */
export function dh(priv, pub) {
  const out = x25519.getSharedSecret(priv, pub);
  let z = 0;
  for (const b of out) z |= b;
  if (z === 0) throw new Error('noise: DH produced the all-zero value');
  return out;
}

/** keyPair derives the public key of an X25519 private key. */
export function keyPair(priv) {
  if (priv.length !== DHLEN) throw new Error('noise: private key must be 32 bytes');
  return { priv: priv.slice(), pub: x25519.getPublicKey(priv) };
}

/** generateKeyPair makes a fresh X25519 key pair from the platform's CSPRNG. */
export function generateKeyPair() {
  return keyPair(x25519.utils.randomSecretKey());
}

// HKDF(chaining_key, input_key_material, num_outputs) of §4.3.
function noiseHKDF(ck, ikm, num) {
  const temp = hmac(sha256, ck, ikm);
  const out1 = hmac(sha256, temp, Uint8Array.of(1));
  const out2 = hmac(sha256, temp, concat(out1, Uint8Array.of(2)));
  if (num === 2) {
    wipe(temp);
    return [out1, out2];
  }
  const out3 = hmac(sha256, temp, concat(out2, Uint8Array.of(3)));
  wipe(temp);
  return [out1, out2, out3];
}

/** CipherState (§5.1). SeXMAP uses only its handshake role and its key after Split. */
export class CipherState {
  constructor(k = null) {
    this.k = k;
    this.n = 0n;
  }

  hasKey() {
    return this.k !== null;
  }

  encryptWithAd(ad, plaintext) {
    if (!this.hasKey()) return plaintext.slice();
    if (this.n > MAX_NONCE) throw new Error('noise: nonce exhausted');
    const ct = encrypt(this.k, this.n, ad, plaintext);
    this.n++;
    return ct;
  }

  decryptWithAd(ad, ciphertext) {
    if (!this.hasKey()) return ciphertext.slice();
    if (this.n > MAX_NONCE) throw new Error('noise: nonce exhausted');
    const pt = decrypt(this.k, this.n, ad, ciphertext);
    this.n++;
    return pt;
  }
}

/** SymmetricState (§5.2). */
export class SymmetricState {
  constructor(protocolName) {
    const name = utf8(protocolName);
    if (name.length <= HASHLEN) {
      this.h = new Uint8Array(HASHLEN);
      this.h.set(name);
    } else {
      this.h = sha256(name);
    }
    this.ck = this.h.slice();
    this.cipher = new CipherState();
  }

  mixKey(ikm) {
    const [ck, tempK] = noiseHKDF(this.ck, ikm, 2);
    wipe(this.ck);
    this.ck = ck;
    this.cipher = new CipherState(tempK);
  }

  mixHash(data) {
    this.h = sha256(concat(this.h, data));
  }

  encryptAndHash(plaintext) {
    const ct = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(ct);
    return ct;
  }

  decryptAndHash(ciphertext) {
    const pt = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return pt;
  }

  split() {
    const [k1, k2] = noiseHKDF(this.ck, new Uint8Array(0), 2);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

/**
 * HandshakeState (§5.3) for a one-way-authenticated pattern from PATTERNS.
 *
 * options: pattern ('NK' | 'XK'), initiator (boolean), prologue (bytes), s (own static key
 * pair {priv, pub}, if the pattern needs it), rs (the peer's static public key, if known),
 * e (an ephemeral key pair to use instead of a fresh one: for test vectors only).
 */
export class HandshakeState {
  constructor({ pattern, initiator, prologue, s = null, rs = null, e = null }) {
    const p = PATTERNS[pattern];
    if (!p) throw new Error(`noise: unsupported pattern ${pattern}`);
    this.initiator = initiator;
    this.messages = p.messages;
    this.index = 0;
    this.s = s;
    this.rs = rs;
    this.fixedE = e;
    this.e = null;
    this.re = null;
    this.ss = new SymmetricState(`Noise_${pattern}_25519_ChaChaPoly_SHA256`);
    this.ss.mixHash(prologue);
    // Pre-messages: both patterns have the responder's static key only.
    for (const tok of p.pre.responder || []) {
      if (tok !== 's') throw new Error('noise: unsupported pre-message');
      const key = initiator ? rs : s && s.pub;
      if (!key || key.length !== DHLEN) throw new Error("noise: the responder's static key is required");
      this.ss.mixHash(key);
    }
    this.result = null;
  }

  /** The handshake hash h, for channel binding and the test vectors. */
  get handshakeHash() {
    return this.ss.h;
  }

  myTurn() {
    return (this.index % 2 === 0) === this.initiator;
  }

  // dhToken performs the DH of an "ee", "es", "se" or "ss" token. The first letter names the
  // initiator's key, the second the responder's.
  dhToken(tok) {
    const [a, b] = tok;
    const mine = this.initiator ? a : b;
    const theirs = this.initiator ? b : a;
    const local = mine === 'e' ? this.e : this.s;
    const remote = theirs === 'e' ? this.re : this.rs;
    if (!local || !remote) throw new Error(`noise: token ${tok} without its keys`);
    const shared = dh(local.priv, remote);
    this.ss.mixKey(shared);
    wipe(shared);
  }

  /** writeMessage returns the next handshake message carrying payload. */
  writeMessage(payload = new Uint8Array(0)) {
    if (this.result || this.index >= this.messages.length || !this.myTurn()) {
      throw new Error('noise: not our turn to write');
    }
    const parts = [];
    for (const tok of this.messages[this.index]) {
      if (tok === 'e') {
        this.e = this.fixedE ? keyPair(this.fixedE.priv) : generateKeyPair();
        parts.push(this.e.pub);
        this.ss.mixHash(this.e.pub);
      } else if (tok === 's') {
        if (!this.s) throw new Error('noise: static key required');
        parts.push(this.ss.encryptAndHash(this.s.pub));
      } else {
        this.dhToken(tok);
      }
    }
    parts.push(this.ss.encryptAndHash(payload));
    this.index++;
    this.finishIfDone();
    return concat(...parts);
  }

  /** readMessage consumes the peer's handshake message and returns its payload; it throws
   * when the message does not authenticate. */
  readMessage(message) {
    if (this.result || this.index >= this.messages.length || this.myTurn()) {
      throw new Error('noise: not our turn to read');
    }
    let off = 0;
    const take = (n) => {
      if (message.length - off < n) throw new Error('noise: message too short');
      const out = message.subarray(off, off + n);
      off += n;
      return out;
    };
    for (const tok of this.messages[this.index]) {
      if (tok === 'e') {
        this.re = take(DHLEN).slice();
        this.ss.mixHash(this.re);
      } else if (tok === 's') {
        const len = this.ss.cipher.hasKey() ? DHLEN + TAGLEN : DHLEN;
        this.rs = this.ss.decryptAndHash(take(len));
      } else {
        this.dhToken(tok);
      }
    }
    const rest = message.subarray(off);
    if (this.ss.cipher.hasKey() && rest.length < TAGLEN) throw new Error('noise: message too short');
    const payload = this.ss.decryptAndHash(rest);
    this.index++;
    this.finishIfDone();
    return payload;
  }

  finishIfDone() {
    if (this.index < this.messages.length) return;
    const [c1, c2] = this.ss.split();
    // c1 is for initiator → responder, c2 for responder → initiator (§5.3 Split).
    this.result = { c1, c2, h: this.ss.h.slice(), rs: this.rs };
    // The ephemeral key is a copy made for this handshake, and its work is done.
    if (this.e) wipe(this.e.priv);
  }

  /** done reports whether the handshake completed (Split was called). */
  get done() {
    return this.result !== null;
  }
}
