// OpenPGP for the browser client, with OpenPGP.js: the key pair (Ed25519 + X25519, version
// 4, the form GnuPG 2.2 reads), encryption to one's own key for storage (summaries,
// appended messages), decryption of what the server stores, and the sign-and-encrypt of
// PGP/MIME. Every choice matches the Go side (crypto/, client/) so either reads the other.
import * as openpgp from 'openpgp';

const { enums } = openpgp;

// SEIPDv1 with MDC and AES-256, uncompressed: what GnuPG 2.2 reads, and what the Go client
// and server write. aeadProtect stays off so no key advertises SEIPDv2 and no message uses it.
const CONFIG = Object.freeze({
  v6Keys: false,
  aeadProtect: false,
  preferredSymmetricAlgorithm: enums.symmetric.aes256,
  preferredHashAlgorithm: enums.hash.sha512,
  preferredCompressionAlgorithm: enums.compression.uncompressed,
  showVersion: false,
  showComment: false,
});

// Methods of key objects take a complete configuration, not a partial one.
const FULL_CONFIG = Object.freeze({ ...openpgp.config, ...CONFIG });

export { openpgp };

export class PGPError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PGPError';
  }
}

/** fingerprint is the key's fingerprint in upper-case hex, as the Go client prints it. */
export function fingerprint(key) {
  return key.getFingerprint().toUpperCase();
}

/**
 * generateKey makes the account's key pair: an Ed25519 primary key (certify, sign) and a
 * Curve25519 ECDH subkey, user ID "name <email>", no expiry. date fixes the creation time.
 */
export async function generateKey({ name = '', email, date = new Date() }) {
  const userID = name ? { name, email } : { email };
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [userID],
    date,
    format: 'object',
    config: CONFIG,
  });
  return privateKey;
}

/** secretKeyBytes is the binary transferable secret key without S2K protection (sealed). */
export function secretKeyBytes(key) {
  if (!key.isPrivate() || !key.isDecrypted()) throw new PGPError('not an unlocked private key');
  return key.write();
}

/** publicKeyBytes is the binary transferable public key (signup uploads it). */
export function publicKeyBytes(key) {
  return key.toPublic().write();
}

/** readPrivateKey reads an unsealed key: one unprotected private key that can sign and decrypt. */
export async function readPrivateKey(binary) {
  let key;
  try {
    key = await openpgp.readPrivateKey({ binaryKey: binary, config: CONFIG });
  } catch {
    throw new PGPError('the private key cannot be read');
  }
  if (!key.isDecrypted()) throw new PGPError('the private key is still passphrase-protected');
  return key;
}

/** readPublicKey reads a binary or armored public key. */
export async function readPublicKey(data) {
  try {
    if (typeof data === 'string') return await openpgp.readKey({ armoredKey: data, config: CONFIG });
    if (data.length && !(data[0] & 0x80)) {
      return await openpgp.readKey({ armoredKey: new TextDecoder().decode(data), config: CONFIG });
    }
    return await openpgp.readKey({ binaryKey: data, config: CONFIG });
  } catch {
    throw new PGPError('the public key cannot be read');
  }
}

/** canEncryptTo reports whether a key has a valid encryption key now. */
export async function canEncryptTo(key, date = new Date()) {
  try {
    await key.getEncryptionKey(undefined, date, undefined, FULL_CONFIG);
    return true;
  } catch {
    return false;
  }
}

/** encryptBinary encrypts data, unsigned, to keys, as one binary OpenPGP message
 * (summaries and bodies stored for oneself). */
export async function encryptBinary(data, keys, date = new Date()) {
  const message = await openpgp.createMessage({ binary: data, format: 'binary', date });
  return openpgp.encrypt({ message, encryptionKeys: keys, format: 'binary', date, config: CONFIG });
}

/** signAndEncrypt signs data with signer and encrypts it to keys; armored, as PGP/MIME carries it. */
export async function signAndEncrypt(data, signer, keys, date = new Date()) {
  const message = await openpgp.createMessage({ binary: data, format: 'binary', date });
  return openpgp.encrypt({ message, encryptionKeys: keys, signingKeys: signer, format: 'armored', date, config: CONFIG });
}

function isArmored(data) {
  if (typeof data === 'string') return true;
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x09 || data[i] === 0x0a || data[i] === 0x0d)) i++;
  return i < data.length && !(data[i] & 0x80);
}

async function readMessage(data) {
  try {
    if (isArmored(data)) {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      return await openpgp.readMessage({ armoredMessage: text.trim(), config: CONFIG });
    }
    return await openpgp.readMessage({ binaryMessage: data, config: CONFIG });
  } catch {
    throw new PGPError('not an OpenPGP message');
  }
}

/** isEncryptedMessage tells a binary OpenPGP message from readable bytes (a stored body the
 * server kept readable starts with a header field, not a packet). */
export function looksLikeOpenPGP(bytes) {
  return bytes.length > 0 && (bytes[0] & 0x80) !== 0;
}

/** decrypt decrypts a message to the private key; the whole plaintext is read, so the
 * integrity check has passed when it returns. */
export async function decrypt(data, privateKey) {
  const message = await readMessage(data);
  if (!message.getEncryptionKeyIDs().length) throw new PGPError('not an encrypted OpenPGP message');
  try {
    const { data: out } = await openpgp.decrypt({ message, decryptionKeys: privateKey, format: 'binary', config: CONFIG });
    return out;
  } catch {
    throw new PGPError('the message does not decrypt with this key');
  }
}

/**
 * decryptAndVerify decrypts data to privateKey and checks its signature with any of keys
 * (the public keys the client knows). It returns { data, sig }: sig is null when the
 * message is not signed, else { keyID (upper-case hex), key (the one of keys that made the
 * signature, or null), good (it verifies; false without key) }. Whose signature counts as
 * verified is for the caller to say (client.js openMessage): only it knows the From shown.
 */
export async function decryptAndVerify(data, privateKey, keys = []) {
  const message = await readMessage(data);
  if (!message.getEncryptionKeyIDs().length) throw new PGPError('not an encrypted OpenPGP message');
  let res;
  try {
    res = await openpgp.decrypt({ message, decryptionKeys: privateKey, verificationKeys: keys, expectSigned: false, format: 'binary', config: CONFIG });
  } catch {
    throw new PGPError('the message does not decrypt with this key');
  }
  if (!res.signatures.length) return { data: res.data, sig: null };
  const s = res.signatures[0];
  const keyID = s.keyID.toHex().toUpperCase();
  const key = keys.find((k) => k.getKeyIDs().some((id) => id.equals(s.keyID))) || null;
  let good = false;
  try {
    await s.verified;
    good = Boolean(key);
  } catch {
    // Not by a key we have, or does not verify: good stays false.
  }
  return { data: res.data, sig: { keyID, key, good } };
}
