// The sealed private key (docs/CLIENT.md "The sealed key"):
//
//   sealed = 0x01 ‖ nonce (24) ‖ XChaCha20-Poly1305(seal_key, nonce, ad, secret key)
//   ad     = "CryptoMail/1 sealed private key" ‖ address with A–Z lowered
//
// The same bytes the Go client writes and reads (client/testdata/sealed-key.json).
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { concat, utf8, asciiLower } from './bytes.js';

export const SEALED_KEY_VERSION = 0x01;
export const SEALED_KEY_LABEL = 'CryptoMail/1 sealed private key';
const NONCE = 24;
const TAG = 16;

/** sealAD is the associated data binding a sealed key to its account. */
export function sealAD(address) {
  return concat(utf8(SEALED_KEY_LABEL), utf8(asciiLower(address)));
}

/** sealPrivateKey seals a binary OpenPGP secret key; nonce defaults to 24 fresh random bytes. */
export function sealPrivateKey(sealKey, address, secretKey, nonce = crypto.getRandomValues(new Uint8Array(NONCE))) {
  if (sealKey.length !== 32) throw new Error('seal: key must be 32 bytes');
  if (nonce.length !== NONCE) throw new Error('seal: nonce must be 24 bytes');
  const ct = xchacha20poly1305(sealKey, nonce, sealAD(address)).encrypt(secretKey);
  return concat(Uint8Array.of(SEALED_KEY_VERSION), nonce, ct);
}

/** UnsealError: the sealed key does not open (wrong passphrase, another account, damage). */
export class UnsealError extends Error {
  constructor() {
    super('the sealed private key does not open with this passphrase');
    this.name = 'UnsealError';
  }
}

/** openSealedKey returns the secret key; any mismatch is one UnsealError, nothing more. */
export function openSealedKey(sealKey, address, sealed) {
  if (sealed.length < 1 + NONCE + TAG || sealed[0] !== SEALED_KEY_VERSION) throw new UnsealError();
  try {
    return xchacha20poly1305(sealKey, sealed.subarray(1, 1 + NONCE), sealAD(address)).decrypt(sealed.subarray(1 + NONCE));
  } catch {
    throw new UnsealError();
  }
}
