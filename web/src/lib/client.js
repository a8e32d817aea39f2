// The browser's CryptoMail client: the same behaviour as the Go client (client/, described in
// docs/CLIENT.md) on top of SeXMAP, XMAP, the sealed key and OpenPGP. Keys live in memory
// only, for the life of a session; nothing secret is ever stored.
import {
  dial, fetchServerKey, encodePublicKey, validateKDFParams, deriveKeysAsync, passphraseBytes,
  newSalt, DEFAULT_KDF_PARAMS, SexmapError,
} from './sexmap.js';
import { encodeRequest, decodeResponse, validAddress, XMAPError, LIMITS } from './xmap.js';
import { sealPrivateKey, openSealedKey, UnsealError } from './sealed.js';
import {
  generateKey, secretKeyBytes, publicKeyBytes, readPrivateKey, readPublicKey, fingerprint, encryptBinary,
  decrypt, decryptAndVerify, signAndEncrypt, looksLikeOpenPGP, canEncryptTo, PGPError,
} from './pgp.js';
import {
  parseEntity, walkParts, parseAddressList, formatAddress, decodeWords, parseDate, buildMessage, pgpMIME,
  formatAddressHeader, formatDate, snippet, htmlToText, decodeCharset,
} from './mime.js';
import { asciiLower, utf8, fromUtf8, toHex, wipe } from './bytes.js';

/** MissingKeysError: recipients with no known key who were not allowed a readable copy. */
export class MissingKeysError extends Error {
  constructor(addresses) {
    super(`no encryption key known for ${addresses.join(', ')}; sending would let their provider read the message`);
    this.name = 'MissingKeysError';
    this.addresses = addresses;
  }
}

export class ClientError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ClientError';
  }
}

/**
 * deriveInline derives the keys on the calling thread (Node tests); the browser passes a
 * function that runs Argon2id in a Web Worker instead.
 */
export async function deriveInline(passphrase, salt, params, onProgress) {
  const pw = passphraseBytes(passphrase);
  try {
    return await deriveKeysAsync(pw, salt, params, onProgress);
  } finally {
    wipe(pw);
  }
}

function kdfParams(kdf) {
  return { t: kdf.time, m: kdf.memory, p: kdf.threads };
}

const BUSY_RETRIES = 3;
const MAX_BUSY_WAIT = 5;
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

/**
 * Client talks to one CryptoMail server.
 *
 * options: baseURL; fetchFn; pins (a PinStore); devices (a DeviceStore; null: keep no
 * device token); onPin(keyText) called when a key is pinned
 * on first use; kdfParams for new passphrases (default: SEXMAP.md's defaults); derive
 * (passphrase, salt, params, onProgress) → { loginPriv, loginPub, sealKey }; now() → Date.
 */
export class Client {
  constructor({ baseURL, fetchFn, pins, devices = null, onPin = () => {}, kdfParams: params = DEFAULT_KDF_PARAMS, derive = deriveInline, now = () => new Date() }) {
    validateKDFParams(params);
    this.baseURL = baseURL.replace(/\/+$/, '');
    this.fetchFn = fetchFn;
    this.pins = pins;
    this.devices = devices;
    this.onPin = onPin;
    this.kdf = params;
    this.derive = derive;
    this.now = now;
  }

  /** serverKey returns the pinned server key, pinning it on first use. */
  async serverKey() {
    const pinned = this.pins.get(this.baseURL);
    if (pinned) return pinned;
    const key = await fetchServerKey(this.fetchFn, this.baseURL);
    this.pins.set(this.baseURL, key);
    this.onPin(encodePublicKey(key));
    return key;
  }

  /** presentedKey fetches the key the server presents now (to show next to the pin). */
  async presentedKey() {
    return encodePublicKey(await fetchServerKey(this.fetchFn, this.baseURL));
  }

  /** resetPin forgets the pin: only after the user checked the new key and said so. */
  resetPin() {
    this.pins.reset(this.baseURL);
  }

  /** deviceToken returns the device token kept for address, or null. */
  deviceToken(address) {
    return this.devices ? this.devices.get(this.baseURL, address) : null;
  }

  /** dialLogin logs in (Noise XK) with a login key, sending the kept device token if any. */
  dialLogin(loginPriv, address) {
    return this.dialWith({ loginPriv, address, deviceToken: this.deviceToken(address) });
  }

  async dialWith(opts) {
    const serverPub = await this.serverKey();
    for (let attempt = 0; ; attempt++) {
      try {
        return await dial({ baseURL: this.baseURL, serverPub, fetchFn: this.fetchFn, ...opts });
      } catch (err) {
        if (err instanceof SexmapError && (err.busy || err.rateLimited) && attempt < BUSY_RETRIES && err.retryAfter <= MAX_BUSY_WAIT) {
          await sleep(Math.max(err.retryAfter, 0.1));
          continue;
        }
        throw err;
      }
    }
  }

  async anonymous(op, fields) {
    const cs = await this.dialWith({});
    const [r] = await exchange((doc) => cs.roundTrip(doc), [{ op, ...fields }]);
    if (r.error) throw r.error;
    return r.result;
  }

  /** lookupSalt returns an address's KDF parameters, refusing any outside the floor and
   * ceiling (so a hostile server can neither cheapen nor inflate the derivation). */
  async lookupSalt(address) {
    if (!validAddress(address)) throw new ClientError(`${JSON.stringify(address.slice(0, 100))} is not a valid address`);
    const r = await this.anonymous('salt-lookup', { address });
    validateKDFParams(kdfParams(r.kdf));
    return r.kdf;
  }

  async newLogin(address, passphrase, key, onProgress) {
    const salt = newSalt();
    const p = this.kdf;
    const keys = await this.derive(passphrase, salt, p, onProgress);
    const secret = secretKeyBytes(key);
    const sealed = sealPrivateKey(keys.sealKey, address, secret);
    wipe(secret);
    return { ...keys, sealed, kdf: { alg: 'argon2id', salt, time: p.t, memory: p.m, threads: p.p } };
  }

  /**
   * signup makes a key pair, derives the keys from the passphrase and creates the account
   * with the invite. onStep(name, progress) reports 'key', 'derive' (0..1), 'account'. It
   * returns the key's fingerprint and the derived keys, which loginWithKeys takes, so that
   * signing in right after does not derive them again.
   */
  async signup({ invite, address, passphrase, name = '', onStep = () => {} }) {
    if (!validAddress(address)) throw new ClientError(`${JSON.stringify(address.slice(0, 100))} is not a valid address`);
    if (!passphrase) throw new ClientError('the passphrase is empty');
    await this.serverKey();
    onStep('key', 0);
    const key = await generateKey({ name, email: address, date: this.now() });
    const login = await this.newLogin(address, passphrase, key, (p) => onStep('derive', p));
    onStep('account', 0);
    try {
      await this.anonymous('signup', {
        invite, address, publicKey: publicKeyBytes(key), loginKey: login.loginPub, kdf: login.kdf, sealedKey: login.sealed,
      });
    } catch (err) {
      wipe(login.loginPriv, login.sealKey);
      throw err;
    }
    return { fingerprint: fingerprint(key), keys: { loginPriv: login.loginPriv, sealKey: login.sealKey } };
  }

  /** login derives the keys, logs in with Noise XK, fetches the account and unseals the
   * private key. A wrong passphrase is a SexmapError with loginFailed. */
  async login(address, passphrase, { onStep = () => {} } = {}) {
    onStep('salt', 0);
    const kdf = await this.lookupSalt(address);
    const keys = await this.derive(passphrase, kdf.salt, kdfParams(kdf), (p) => onStep('derive', p));
    return this.loginWithKeys(address, keys, { onStep });
  }

  /** loginWithKeys logs in with keys already derived (and wipes them). */
  async loginWithKeys(address, keys, { onStep = () => {} } = {}) {
    onStep('login', 0);
    let cs;
    try {
      cs = await this.dialLogin(keys.loginPriv, address);
    } catch (err) {
      wipe(keys.loginPriv, keys.sealKey);
      throw err;
    }
    const s = new Session(this, address, cs, keys.loginPriv);
    try {
      onStep('unseal', 0);
      const acct = await s.one('get-account', {});
      await s.unseal(keys.sealKey, acct.account, address);
    } catch (err) {
      await s.logout().catch(() => {});
      throw err;
    } finally {
      wipe(keys.sealKey);
    }
    await s.keepDeviceToken();
    return s;
  }
}

/** exchange sends a batch and matches each result to its request (ids r1, r2, …). */
async function exchange(roundTrip, requests) {
  if (requests.length === 0 || requests.length > LIMITS.maxBatchSize) {
    throw new ClientError(`a batch holds 1 to ${LIMITS.maxBatchSize} requests`);
  }
  const reqs = requests.map((r, i) => ({ ...r, id: `r${i + 1}` }));
  const doc = encodeRequest(reqs);
  if (doc.length > LIMITS.maxDocumentSize) throw new ClientError('the request is larger than the protocol allows');
  const raw = await roundTrip(doc);
  let resp;
  try {
    resp = decodeResponse(raw);
  } catch (err) {
    throw new SexmapError('bad-response', `malformed XMAP response: ${err.message}`);
  }
  if (resp.error) throw new XMAPError(resp.error.code, resp.error.message, true);
  if (resp.responses.length !== reqs.length) throw new SexmapError('bad-response', `${resp.responses.length} results for ${reqs.length} requests`);
  return resp.responses.map((r, i) => {
    if (r.id !== reqs[i].id || r.op !== reqs[i].op) throw new SexmapError('bad-response', `result ${i + 1} does not answer its request`);
    return r.error ? { error: new XMAPError(r.error.code, r.error.message) } : { result: r.result };
  });
}

/** Session is a logged-in session. */
/**
 * classifySignature says what a signature (from decryptAndVerify) proves about a message
 * that shows the sender shown: verified only when the key of shown made it. A good
 * signature by another known key is other-signer, named by the address its key was looked
 * up for. Statuses as the Go client's: verified, other-signer, unknown-key, bad, none.
 */
export function classifySignature(sig, keys, shown, outerFrom) {
  if (!sig) return { status: 'none', signer: '', signerAddress: '', reason: '' };
  if (!sig.key) return { status: 'unknown-key', signer: sig.keyID, signerAddress: '', reason: '' };
  const fp = fingerprint(sig.key);
  const want = asciiLower(shown || '');
  let owner = '';
  for (const [a, k] of keys) {
    // Aliases can share a key: the shown address wins, then the smallest.
    if (fingerprint(k) === fp && (!owner || a === want || (owner !== want && a < owner))) owner = a;
  }
  const out = { status: 'verified', signer: fp, signerAddress: owner, reason: '' };
  if (!sig.good) return { ...out, status: 'bad', reason: 'the signature does not verify' };
  if (!want || !keys.get(want) || fingerprint(keys.get(want)) !== fp) {
    return { ...out, status: 'other-signer', reason: want ? `signed by ${owner}, not by the sender shown` : `signed by ${owner}, but the message shows no single sender` };
  }
  if (outerFrom && asciiLower(outerFrom) !== want) out.reason = `the outer From: is ${outerFrom}`;
  return out;
}

export class Session {
  constructor(client, address, cs, loginPriv) {
    this.c = client;
    this.address = address;
    this.cs = cs;
    this.loginPriv = loginPriv;
    this.key = null;
    this.closed = false;
    this.keys = new Map(); // public-key lookups by lower-cased address; null: none
    this.renewing = null;
    this.displayName = '';
  }

  async unseal(sealKey, account, typed) {
    let secret = null;
    for (const a of [account.address, typed]) {
      try {
        secret = openSealedKey(sealKey, a, account.sealedKey);
        break;
      } catch (err) {
        if (!(err instanceof UnsealError)) throw err;
      }
    }
    if (!secret) throw new UnsealError();
    // OpenPGP.js keeps views into the bytes it parses, so it gets a copy of its own and
    // only the decrypted buffer is wiped.
    const key = await readPrivateKey(secret.slice());
    wipe(secret);
    const pub = await readPublicKey(account.publicKey);
    if (fingerprint(pub) !== fingerprint(key)) throw new PGPError("the sealed key is not the private half of the account's public key");
    this.key = key;
    this.keys.set(asciiLower(this.address), key.toPublic());
    // The name the user gave at sign-up, for the From header of mail they write.
    try {
      const { user } = await key.getPrimaryUser();
      this.displayName = (user.userID && user.userID.name) || '';
    } catch {
      this.displayName = '';
    }
  }

  get fingerprint() {
    return this.key ? fingerprint(this.key) : '';
  }

  privateKey() {
    if (this.closed || !this.key) throw new ClientError('the session is logged out');
    return this.key;
  }

  // roundTrip logs in again when the server no longer knows the session: a 401 means the
  // request did not run, so sending it again is safe.
  async roundTrip(doc, signal) {
    if (this.closed) throw new ClientError('the session is logged out');
    const cs = this.cs;
    try {
      return await cs.roundTrip(doc, { signal });
    } catch (err) {
      if (!(err instanceof SexmapError && err.unknownSession)) throw err;
    }
    const fresh = await this.renew(cs);
    return fresh.roundTrip(doc, { signal });
  }

  async renew(expired) {
    if (this.cs !== expired) return this.cs;
    if (!this.renewing) {
      this.renewing = this.c.dialLogin(this.loginPriv, this.address)
        .then((cs) => {
          this.cs = cs;
          return cs;
        })
        .finally(() => {
          this.renewing = null;
        });
    }
    return this.renewing;
  }

  /** do sends requests as one document and returns one { result } or { error } each. */
  async do(requests, { signal } = {}) {
    const rs = await exchange((doc) => this.roundTrip(doc, signal), requests);
    requests.forEach((r, i) => {
      if (r.op === 'logout' && !rs[i].error) this.forget();
    });
    return rs;
  }

  /** one runs a single request and returns its result, throwing its XMAPError. */
  async one(op, fields = {}, opts) {
    const [r] = await this.do([{ op, ...fields }], opts);
    if (r.error) throw r.error;
    return r.result;
  }

  forget() {
    this.closed = true;
    wipe(this.loginPriv);
    this.key = null;
    this.keys.clear();
  }

  /** logout ends the session on the server and forgets every key. */
  async logout() {
    if (this.closed) return;
    try {
      await exchange((doc) => this.cs.roundTrip(doc), [{ op: 'logout' }]);
    } catch (err) {
      if (!(err instanceof SexmapError && err.unknownSession)) throw err;
    } finally {
      this.forget();
    }
  }

  listFolders() {
    return this.one('list-folders').then((r) => r.folders);
  }

  /** decryptSummary reads a summary leniently: unknown fields ignored, missing ones empty. */
  async decryptSummary(blob) {
    const js = await decrypt(blob, this.privateKey());
    let raw;
    try {
      raw = JSON.parse(fromUtf8(js));
    } catch {
      throw new ClientError('the summary is not JSON');
    }
    const str = (v) => (typeof v === 'string' ? v : '');
    const list = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);
    const date = str(raw.date) ? new Date(raw.date) : null;
    return {
      from: str(raw.from),
      to: list(raw.to),
      cc: list(raw.cc),
      subject: str(raw.subject),
      date: date && !Number.isNaN(date.getTime()) ? date : null,
      messageId: str(raw.message_id).replace(/^<|>$/g, ''),
      snippet: str(raw.snippet),
      hasAttachments: raw.has_attachments === true,
    };
  }

  async listed(m) {
    // summaryUnverified: another user wrote this summary (summary-by="sender"), or the
    // server did not say who did; its From, subject and snippet are that user's word.
    const out = { ...m, summary: null, summaryError: null, summaryUnverified: !['server', 'owner'].includes(m.summaryBy) };
    delete out.body;
    if (m.summary) {
      try {
        out.summary = await this.decryptSummary(m.summary);
      } catch (err) {
        out.summaryError = err.message;
      }
    }
    return out;
  }

  /** list returns one page of a folder with decrypted summaries. */
  async list(folder, { cursor, limit = 50, sort } = {}) {
    const r = await this.one('list-messages', { folder, cursor, limit, sort });
    const messages = await Promise.all(r.messages.map((m) => this.listed(m)));
    return { folderId: r.folderId, total: r.total, state: r.state, nextCursor: r.nextCursor || '', messages };
  }

  /** summaries fetches and decrypts the summaries of messages by id (deferred ids included). */
  async summaries(ids) {
    const out = [];
    for (let i = 0; i < ids.length; i += LIMITS.maxIDs) {
      let part = ids.slice(i, i + LIMITS.maxIDs);
      while (part.length) {
        const r = await this.one('fetch', { parts: 'summary', ids: part });
        out.push(...await Promise.all(r.messages.map((m) => this.listed(m))));
        part = r.deferred;
      }
    }
    return out;
  }

  /** lookupKeys returns the server's keys for addresses (local accounts), cached. */
  async lookupKeys(addresses) {
    const out = new Map();
    const ask = [];
    for (const a of addresses) {
      const k = asciiLower(a);
      if (this.keys.has(k)) out.set(k, this.keys.get(k));
      else if (!ask.some((x) => asciiLower(x) === k)) ask.push(a);
    }
    for (let i = 0; i < ask.length; i += LIMITS.maxIDs) {
      const part = ask.slice(i, i + LIMITS.maxIDs);
      const r = await this.one('public-keys', { addresses: part });
      const found = new Map();
      for (const k of r.keys) {
        const key = await readPublicKey(k.key);
        if (await canEncryptTo(key, this.c.now())) found.set(asciiLower(k.address), key);
      }
      for (const a of part) {
        const k = asciiLower(a);
        this.keys.set(k, found.get(k) || null);
        out.set(k, found.get(k) || null);
      }
    }
    return out;
  }

  /** read fetches a message and decrypts it (see openMessage). */
  async read(id) {
    this.privateKey();
    const r = await this.one('fetch', { parts: 'body', ids: [id] });
    const m = r.messages.find((x) => x.id === id);
    if (!m) throw new XMAPError('not-found', `no message ${id}`);
    return this.openMessage(m);
  }

  /**
   * openMessage decrypts a fetched message: the storage layer, then PGP/MIME or inline PGP,
   * checking the signature against the From address's key. It returns headers, text, html,
   * attachments, encrypted, signature and storageEncrypted, as the Go client's Message.
   */
  async openMessage(m) {
    const me = this.privateKey();
    const msg = {
      id: m.id, folderId: m.folderId, flags: m.flags || [], size: m.size, received: m.received,
      encrypted: false, storageEncrypted: false, signature: { status: 'none', signer: '', signerAddress: '', reason: '' },
    };
    let raw = m.body;
    if (raw.length && looksLikeOpenPGP(raw)) {
      raw = await decrypt(m.body, me);
      msg.storageEncrypted = true;
    }
    const outer = parseEntity(raw);
    let fields = outer.header;
    let content = outer;
    // The sender shown, as the reader lists it (every From field, every entry): a signature
    // can vouch only for a From that shows exactly one address and nothing else.
    const fromEntries = (h) => h.getAll('From').flatMap((v) => parseAddressList(v)).filter((a) => a.address || a.name);
    const fromAddr = (h) => {
      const list = fromEntries(h);
      return list.length === 1 ? list[0].address || '' : '';
    };
    const outerFrom = fromAddr(outer.header);
    if (outer.type === 'multipart/encrypted' && (outer.params.protocol || '').toLowerCase() === 'application/pgp-encrypted' && outer.parts) {
      const part = outer.parts[1] || outer.parts.find((p) => p.type === 'application/octet-stream');
      if (!part) throw new ClientError('PGP/MIME message without its encrypted part');
      // The From shown is the merged one: the protected inner From where there is one.
      const open = async (keys) => {
        const { data, sig } = await decryptAndVerify(part.body, me, [...keys.values()]);
        content = parseEntity(data);
        fields = mergeHeaders(outer.header, content.header);
        return sig;
      };
      const keys = await this.signerKeys(outerFrom);
      let sig = await open(keys);
      const shown = fromAddr(fields);
      if (sig && shown && !keys.has(asciiLower(shown))) {
        const k = await this.keyFor(shown);
        if (k) {
          keys.set(asciiLower(shown), k);
          // The signature is checked only while decrypting: again, now with the shown From's key.
          if (!sig.key) sig = await open(keys);
        }
      }
      msg.encrypted = true;
      msg.signature = classifySignature(sig, keys, shown, outerFrom);
    }
    const parts = walkParts(content);
    msg.text = parts.text;
    msg.html = parts.html;
    msg.attachments = parts.attachments;
    if (!msg.encrypted && msg.text.trim().startsWith('-----BEGIN PGP MESSAGE-----')) {
      // Inline PGP: the From shown is the message's own.
      try {
        const keys = await this.signerKeys(outerFrom);
        const { data, sig } = await decryptAndVerify(msg.text.trim(), me, [...keys.values()]);
        msg.text = decodeCharset(data, 'utf-8');
        msg.encrypted = true;
        msg.signature = classifySignature(sig, keys, outerFrom, outerFrom);
        // Only that text was encrypted and signed. An HTML part beside it would be shown
        // instead of it, unprotected: drop it. Attachments stay, but the signature must not
        // seem to cover them.
        msg.html = '';
        if (msg.attachments.length && msg.signature.status !== 'none') {
          const note = `only the text is signed; the ${msg.attachments.length} attachment(s) beside it are not`;
          msg.signature.reason = msg.signature.reason ? `${msg.signature.reason}; ${note}` : note;
        }
      } catch {
        // Not for us, or damaged: shown as it is.
      }
    }
    const addrs = (name) => fields.getAll(name).flatMap((v) => parseAddressList(v)).filter((a) => a.address || a.name);
    msg.fromList = fromEntries(fields);
    msg.from = msg.fromList.map(formatAddress).join(', ');
    msg.fromAddress = msg.fromList.length ? msg.fromList[0].address : '';
    msg.to = addrs('To');
    msg.cc = addrs('Cc');
    msg.replyTo = addrs('Reply-To');
    msg.subject = decodeWords(fields.get('Subject'));
    msg.date = parseDate(fields.get('Date'));
    msg.messageId = fields.get('Message-ID').trim().replace(/^<|>$/g, '');
    msg.references = fields.get('References').split(/\s+/).filter(Boolean);
    return msg;
  }

  // signerKeys are the keys a signature is recognised by, by lower-cased address: the
  // user's own, the outer From's, and every key this session has looked up, so a signature
  // by a known user is named as that user's whatever the message claims.
  async signerKeys(outerFrom) {
    const keys = new Map([[asciiLower(this.address), this.privateKey().toPublic()]]);
    const k = await this.keyFor(outerFrom);
    if (k) keys.set(asciiLower(outerFrom), k);
    for (const [a, key] of this.keys) if (key && !keys.has(a)) keys.set(a, key);
    return keys;
  }

  // keyFor is the key to check a signature from address with: the user's own key for their
  // own mail, else the server's key for a local account; null when none is known.
  async keyFor(address) {
    if (!address) return null;
    if (asciiLower(address) === asciiLower(this.address)) return this.privateKey().toPublic();
    try {
      return (await this.lookupKeys([address])).get(asciiLower(address)) || null;
    } catch {
      return null; // a failed lookup only means the signature cannot be checked
    }
  }

  /**
   * recipientKeys tells, per recipient, whether mail to it will be end-to-end encrypted:
   * [{ address, key (or null), local }].
   */
  async recipientKeys(addresses) {
    const keys = await this.lookupKeys(addresses);
    return addresses.map((a) => ({ address: a, key: keys.get(asciiLower(a)) || null }));
  }

  /**
   * sendMail composes, signs and encrypts a draft and sends it (docs/CLIENT.md "Sending").
   * draft: { to, cc, bcc (strings, display names allowed), subject, text, attachments
   * [{ filename, contentType, data }], allowPlaintext (addresses), fromName, inReplyTo,
   * references }.
   */
  async sendMail(draft) {
    const me = this.privateKey();
    const now = draft.date || this.c.now();
    const to = parseRecipients(draft.to, 'To');
    const cc = parseRecipients(draft.cc, 'Cc');
    const bcc = parseRecipients(draft.bcc, 'Bcc');
    const rcpts = [];
    const seen = new Set();
    for (const a of [...to, ...cc, ...bcc]) {
      const k = asciiLower(a.address);
      if (!seen.has(k)) {
        seen.add(k);
        rcpts.push({ addr: a.address, key: null, local: false });
      }
    }
    if (rcpts.length === 0) throw new ClientError('no recipients');
    if (rcpts.length > LIMITS.maxRecipients) throw new ClientError(`${rcpts.length} recipients, at most ${LIMITS.maxRecipients}`);
    const keys = await this.lookupKeys(rcpts.map((r) => r.addr));
    const allowed = new Set((draft.allowPlaintext || []).map((a) => asciiLower(a.trim())));
    const missing = [];
    for (const r of rcpts) {
      const key = keys.get(asciiLower(r.addr));
      if (key) {
        r.key = key;
        r.local = true;
      } else if (!allowed.has(asciiLower(r.addr))) {
        missing.push(r.addr);
      }
    }
    if (missing.length) throw new MissingKeysError(missing);

    const domain = this.address.slice(this.address.lastIndexOf('@') + 1);
    const msgID = `${toHex(crypto.getRandomValues(new Uint8Array(16)))}@${domain}`;
    const fromName = draft.fromName ?? this.displayName;
    const fields = [['From', formatAddressHeader([{ name: fromName, address: this.address }])]];
    if (to.length) fields.push(['To', formatAddressHeader(to)]);
    if (cc.length) fields.push(['Cc', formatAddressHeader(cc)]);
    fields.push(['Date', formatDate(now)], ['Message-ID', `<${msgID}>`]);
    if (draft.inReplyTo) fields.push(['In-Reply-To', `<${draft.inReplyTo}>`]);
    if (draft.references && draft.references.length) fields.push(['References', draft.references.map((r) => `<${r.replace(/^<|>$/g, '')}>`).join(' ')]);
    const atts = draft.attachments || [];
    const text = draft.text || '';
    const subject = draft.subject || '';

    const inner = buildMessage(fields, subject, text, atts, true);
    const armored = await signAndEncrypt(inner, me, [me.toPublic(), ...rcpts.filter((r) => r.key).map((r) => r.key)], now);
    wipe(inner);
    const body = pgpMIME(fields, armored);
    if (body.length > LIMITS.maxDeliverySize) throw new ClientError(`the encrypted message is ${body.length} bytes, the limit is ${LIMITS.maxDeliverySize}`);
    const req = { body, recipients: [] };
    const plain = rcpts.filter((r) => !r.key).map((r) => r.addr);
    if (plain.length) {
      req.plaintextBody = buildMessage(fields, subject, text, atts, false);
      if (req.plaintextBody.length > LIMITS.maxDeliverySize) throw new ClientError('the message is larger than the limit');
    }
    const summary = {
      from: formatAddress({ name: fromName, address: this.address }),
      to: to.map(formatAddress),
      cc: cc.map(formatAddress),
      subject,
      date: new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
      message_id: msgID,
      snippet: snippet(text),
      has_attachments: atts.length > 0,
    };
    for (const r of rcpts) {
      const x = { address: r.addr, encrypted: Boolean(r.key), allowPlaintext: !r.key };
      if (r.local && r.key) x.summary = await sealSummary(summary, r.key, now);
      req.recipients.push(x);
    }
    req.sentSummary = await sealSummary(summary, me.toPublic(), now);
    const res = await this.one('send', req);
    return { messageId: msgID, sent: res.sent, recipients: res.recipients, plaintext: plain };
  }

  /** appendMessage stores a raw message encrypted to the user's own key, with its summary. */
  async appendMessage(folder, raw, flags = []) {
    const me = this.privateKey().toPublic();
    const body = await encryptBinary(raw, [me], this.c.now());
    if (body.length > LIMITS.maxMessageSize) throw new ClientError('the encrypted message is larger than the limit');
    const ent = parseEntity(raw);
    const parts = walkParts(ent);
    const date = parseDate(ent.header.get('Date'));
    const sm = {
      from: parseAddressList(ent.header.get('From')).map(formatAddress).join(', '),
      to: parseAddressList(ent.header.get('To')).map(formatAddress),
      cc: parseAddressList(ent.header.get('Cc')).map(formatAddress),
      subject: decodeWords(ent.header.get('Subject')),
      date: date ? date.toISOString().replace('.000Z', 'Z') : '',
      message_id: ent.header.get('Message-ID').trim().replace(/^<|>$/g, ''),
      snippet: snippet(parts.text || htmlToText(parts.html)),
      has_attachments: parts.attachments.length > 0,
    };
    const summary = await sealSummary(sm, me, this.c.now());
    return (await this.one('append', { folder, flags, body, summary })).message;
  }

  /** emptyTrash destroys every message in Trash: delete marks them \Deleted, expunge removes. */
  async emptyTrash(trash) {
    const ids = [];
    let cursor;
    do {
      const r = await this.one('list-messages', { folder: trash, limit: LIMITS.maxPageSize, cursor });
      ids.push(...r.messages.map((m) => m.id));
      cursor = r.nextCursor;
    } while (cursor);
    for (let i = 0; i < ids.length; i += LIMITS.maxIDs) {
      await this.one('delete', { ids: ids.slice(i, i + LIMITS.maxIDs) });
    }
    return (await this.one('expunge', { folder: trash })).count;
  }

  /** state returns the account's current state (a wait with timeout 0 answers at once). */
  async state() {
    return (await this.one('wait', { since: '0', timeout: 0 })).state;
  }

  /** changesSince follows has-more and returns { created, updated, destroyed, state }, or null
   * when the server cannot tell (resync-required). */
  async changesSince(since) {
    const out = { created: [], updated: [], destroyed: [], state: since };
    for (;;) {
      let r;
      try {
        r = await this.one('changes', { since: out.state });
      } catch (err) {
        if (err instanceof XMAPError && err.code === 'resync-required') return null;
        throw err;
      }
      out.created.push(...r.created);
      out.updated.push(...r.updated);
      out.destroyed.push(...r.destroyed);
      out.state = r.state;
      if (!r.hasMore) return out;
    }
  }

  /** keepDeviceToken makes sure a valid device token is kept (CLIENT.md, "Device tokens"):
   * it sends the one it holds, which the server answers back while valid, or a new one. It
   * is a convenience for later sign-ins: a failure is ignored. */
  async keepDeviceToken() {
    if (!this.c.devices) return;
    try {
      const current = this.c.deviceToken(this.address);
      const r = await this.one('device-token', current ? { current } : {});
      this.c.devices.set(this.c.baseURL, this.address, r.token);
    } catch {
      // an older server, or storage that refuses: sign-ins simply go without a token
    }
  }

  /** changePassphrase derives new keys with a new salt, re-seals the same private key and
   * replaces all three on the server in one request. The server wants proof of the current
   * passphrase: the request is the first of a new login made with the current login key
   * (XMAP.md, change-passphrase). The change ends every session of the account, so the
   * session then logs in again with the new key (the user stays signed in here) and takes
   * a new device token. */
  async changePassphrase(passphrase, onProgress) {
    const key = this.privateKey();
    if (!passphrase) throw new ClientError('the passphrase is empty');
    const login = await this.c.newLogin(this.address, passphrase, key, onProgress);
    wipe(login.sealKey);
    try {
      const proof = await this.c.dialLogin(this.loginPriv, this.address);
      const [r] = await exchange((doc) => proof.roundTrip(doc), [
        { op: 'change-passphrase', loginKey: login.loginPub, kdf: login.kdf, sealedKey: login.sealed },
      ]);
      if (r.error) throw r.error;
    } catch (err) {
      wipe(login.loginPriv);
      throw err;
    }
    if (this.c.devices) this.c.devices.reset(this.c.baseURL, this.address);
    wipe(this.loginPriv);
    this.loginPriv = login.loginPriv;
    try {
      await this.renew(this.cs);
      await this.keepDeviceToken();
    } catch {
      // the next request logs in again
    }
  }
}

function parseRecipients(list, field) {
  const out = [];
  for (const item of list || []) {
    if (!item || !item.trim()) continue;
    for (const a of parseAddressList(item)) {
      if (!a.address || !validAddress(a.address)) {
        throw new ClientError(`${field}: ${JSON.stringify((a.address || a.name).slice(0, 100))} is not an address mail can be sent to`);
      }
      out.push(a);
    }
  }
  return out;
}

// mergeHeaders: the protected header fields of the decrypted entity where it has them, the
// outer ones otherwise.
function mergeHeaders(outer, inner) {
  const h = new outer.constructor(outer.fields.map((f) => [...f]));
  for (const k of ['From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'Reply-To', 'In-Reply-To', 'References']) {
    if (inner.has(k)) h.set(k, inner.get(k));
  }
  return h;
}

// sealSummary encrypts a summary to key, shortening the address lists and then the snippet
// until it fits XMAP's summary limit, as the Go client does.
async function sealSummary(sm, key, now) {
  const s = { ...sm, to: [...sm.to], cc: [...sm.cc] };
  for (;;) {
    const obj = { from: s.from };
    if (s.to.length) obj.to = s.to;
    if (s.cc.length) obj.cc = s.cc;
    obj.subject = s.subject;
    if (s.date) obj.date = s.date;
    if (s.message_id) obj.message_id = s.message_id;
    obj.snippet = s.snippet;
    obj.has_attachments = s.has_attachments;
    const blob = await encryptBinary(utf8(JSON.stringify(obj)), [key], now);
    if (blob.length <= LIMITS.maxSummarySize) return blob;
    if (s.to.length + s.cc.length > 1) {
      s.to = s.to.slice(0, Math.floor(s.to.length / 2));
      s.cc = s.cc.slice(0, Math.floor(s.cc.length / 2));
    } else if (s.snippet || s.subject.length > 200) {
      s.snippet = '';
      s.subject = Array.from(s.subject).slice(0, 200).join('');
    } else {
      throw new ClientError('the summary is too large');
    }
  }
}

