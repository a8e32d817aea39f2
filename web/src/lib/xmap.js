// XMAP/1 documents (docs/XMAP.md): requests and results as plain objects, written in the
// canonical form the Go encoder writes (so a decoded example re-encodes to the same bytes)
// and read strictly, as the Go decoder reads them.
//
// A request is { op: 'list-messages', id: 'r1', ...fields }; a result is
// { op, id, result: {...fields} } or { op, id, error: { code, message } }. Field names
// are the attribute and element names in camelCase; blobs are Uint8Array; times are RFC 3339
// strings in UTC; a folder reference is { id } or { name }.
import { parseXML, XMLError } from './xml.js';
import { toBase64, fromBase64, utf8, fromUtf8 } from './bytes.js';

export const NAMESPACE = 'urn:cryptomail:xmap:1';
export const VERSION = '1';
const NAMESPACE_PREFIX = 'urn:cryptomail:xmap:';

export const LIMITS = Object.freeze({
  maxDocumentSize: 32 << 20,
  maxResponseSize: 64 << 20,
  maxDepth: 8,
  maxTokens: 250000,
  maxAttributes: 16,
  maxAttributeSize: 4096,
  maxBatchSize: 50,
  maxIDs: 500,
  maxRecipients: 100,
  maxFlags: 32,
  maxPageSize: 200,
  maxChanges: 5000,
  maxWaitSeconds: 120,
  maxMessageSize: 20 << 20,
  // The size rule (XMAP.md, Limits): the largest message send takes, leaving room within
  // maxMessageSize for what the server adds before storing it.
  maxDeliverySize: (20 << 20) - (64 << 10),
  maxSummarySize: 32 << 10,
  maxContactSize: 32 << 10,
  maxKeySize: 64 << 10,
  maxShortText: 320,
  maxErrorMessage: 1024,
});

/** XMAPError is a per-request error or a document-level one (documentLevel true). */
export class XMAPError extends Error {
  constructor(code, message, documentLevel = false) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'XMAPError';
    this.code = code;
    this.reason = message;
    this.documentLevel = documentLevel;
  }
}

// ---- value syntax (XMAP.md "Values") ---------------------------------------------------

export function validID(s) {
  return typeof s === 'string' && s.length >= 1 && s.length <= 64 && /^[A-Za-z0-9._-]+$/.test(s);
}

export function validCursor(s) {
  return typeof s === 'string' && s.length >= 1 && s.length <= 512 && /^[A-Za-z0-9._~+/=:-]+$/.test(s);
}

export function validFolderName(s) {
  if (typeof s !== 'string' || s.length === 0 || utf8(s).length > 255) return false;
  if (/[\p{Cc}\uFFFD\uFEFF]/u.test(s)) return false;
  return !/^\s/u.test(s) && !/\s$/u.test(s);
}

const LOCAL_ASCII = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;

/** validAddress is XMAP's plain address: dot-atom local part, domain labels, UTF-8 allowed. */
export function validAddress(s) {
  if (typeof s !== 'string' || utf8(s).length > 254) return false;
  const at = s.indexOf('@');
  if (at < 1 || at !== s.lastIndexOf('@')) return false;
  const local = s.slice(0, at);
  const domain = s.slice(at + 1);
  if (utf8(local).length > 64 || domain.length === 0 || utf8(domain).length > 253) return false;
  for (const part of local.split('.')) {
    if (part === '') return false;
    for (const ch of part) {
      // Go's unicode.IsPrint beyond ASCII: letters, marks, numbers, punctuation, symbols.
      if (ch.codePointAt(0) > 0x7f ? !/^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(ch) : !LOCAL_ASCII.test(ch)) return false;
    }
  }
  for (const label of domain.split('.')) {
    const n = utf8(label).length;
    if (label === '' || n > 63 || label.startsWith('-') || label.endsWith('-')) return false;
    for (const ch of label) {
      if (!/^[A-Za-z0-9-]$/.test(ch) && !(ch.codePointAt(0) > 0x7f && /^[\p{L}\p{Nd}]$/u.test(ch))) return false;
    }
  }
  return true;
}

function validInvite(s) {
  return typeof s === 'string' && s.length >= 1 && s.length <= 128 && /^[\x21-\x7e]+$/.test(s);
}

const SYSTEM_FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Draft', '\\Deleted'];

/** parseFlag returns the canonical flag (keywords lower-cased) or null. */
export function parseFlag(s) {
  if (SYSTEM_FLAGS.includes(s)) return s;
  if (s.length === 0 || s.length > 64) return null;
  if (!/^[\x21-\x7e]+$/.test(s) || /[(){\]%*"\\]/.test(s)) return null;
  return s.toLowerCase();
}

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** canonicalTime parses RFC 3339 and writes it in UTC as the Go encoder does (fraction only
 * when non-zero, trailing zeros dropped), or returns null. */
export function canonicalTime(s) {
  const m = TIME_RE.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, frac = '', off] = m;
  const nums = [y, mo, d, h, mi, sec].map(Number);
  if (nums[1] < 1 || nums[1] > 12 || nums[2] < 1 || nums[2] > 31 || nums[3] > 23 || nums[4] > 59 || nums[5] > 59) return null;
  let ms = Date.UTC(nums[0], nums[1] - 1, nums[2], nums[3], nums[4], nums[5]);
  const back = new Date(ms);
  if (back.getUTCDate() !== nums[2] || back.getUTCFullYear() !== nums[0]) return null;
  if (off !== 'Z' && off !== 'z') {
    const sign = off[0] === '-' ? -1 : 1;
    const oh = Number(off.slice(1, 3));
    const om = Number(off.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    ms -= sign * (oh * 60 + om) * 60000;
  }
  const t = new Date(ms);
  const year = t.getUTCFullYear();
  if (year < 1 || year > 9999) return null;
  const p2 = (n) => String(n).padStart(2, '0');
  let f = frac.slice(1, 10).replace(/0+$/, '');
  f = f ? '.' + f : '';
  return `${String(year).padStart(4, '0')}-${p2(t.getUTCMonth() + 1)}-${p2(t.getUTCDate())}T${p2(t.getUTCHours())}:${p2(t.getUTCMinutes())}:${p2(t.getUTCSeconds())}${f}Z`;
}

// ---- the encoder (canonical form) ------------------------------------------------------

function escape(s, attr) {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '&') out += '&amp;';
    else if (ch === '<') out += '&lt;';
    else if (ch === '>') out += '&gt;';
    else if (ch === '"' && attr) out += '&quot;';
    else if (c === 9) out += '&#x9;';
    else if (c === 10) out += '&#xA;';
    else if (c === 13) out += '&#xD;';
    else if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff) || c === 0xfffe || c === 0xffff) out += '\uFFFD';
    else out += ch;
  }
  return out;
}

class Encoder {
  constructor() {
    this.parts = ['<?xml version="1.0" encoding="UTF-8"?>\n'];
    this.depth = 0;
    this.open = false;
    this.text = false;
  }

  closeOpen() {
    if (this.open) {
      this.parts.push('>\n');
      this.open = false;
    }
  }

  start(name) {
    this.closeOpen();
    this.parts.push('  '.repeat(this.depth), '<', name);
    this.open = true;
    this.depth++;
  }

  end(name) {
    this.depth--;
    if (this.open) {
      this.parts.push('/>\n');
      this.open = false;
    } else if (this.text) {
      this.parts.push('</', name, '>\n');
      this.text = false;
    } else {
      this.parts.push('  '.repeat(this.depth), '</', name, '>\n');
    }
  }

  attr(name, value) {
    if (value === undefined || value === null || value === '') return;
    this.parts.push(' ', name, '="', escape(String(value), true), '"');
  }

  chars(s) {
    if (!s) return;
    this.parts.push('>');
    this.open = false;
    this.text = true;
    this.parts.push(s);
  }

  finish() {
    return this.parts.join('');
  }
}

// ---- schemas ---------------------------------------------------------------------------
//
// An element schema lists attributes [xmlName, prop, type, opts] in canonical order and
// children [xmlName, prop, schemaOrTextType, mode] in canonical order. Attribute types:
// id, cursor, address, folderName, str, num, bool, time, flags, b64, invite, enum:a|b,
// origin (summary-by), folderRef (the folder / folder-id pair). Child modes: one, opt, many. A child type is
// a schema, or a text type: 'blob:<max>' or 'text:<id|address>'.

const FOLDER = { attrs: [['id', 'id', 'id', { req: true }], ['name', 'name', 'folderName', { req: true }], ['role', 'role', 'enum:inbox|sent|drafts|trash|junk'], ['total', 'total', 'num', { req: true, always: true }], ['unseen', 'unseen', 'num', { req: true, always: true }]] };
const MESSAGE = {
  attrs: [['id', 'id', 'id', { req: true }], ['folder-id', 'folderId', 'id', { req: true }], ['flags', 'flags', 'flags', { deleted: true }], ['size', 'size', 'num', { req: true, always: true }], ['received', 'received', 'time', { req: true }], ['summary-by', 'summaryBy', 'origin']],
  kids: [['summary', 'summary', `blob:${LIMITS.maxSummarySize}`, 'opt'], ['body', 'body', `blob:${LIMITS.maxMessageSize}`, 'opt']],
};
const KDF = { attrs: [['alg', 'alg', 'enum:argon2id', { req: true }], ['salt', 'salt', 'b64', { req: true, min: 16, max: 64 }], ['time', 'time', 'num', { req: true, always: true, min: 2, max: 16 }], ['memory', 'memory', 'num', { req: true, always: true, min: 19456, max: 2097152 }], ['threads', 'threads', 'num', { req: true, always: true, min: 1, max: 16 }]] };
const KEYS_KIDS = [['login-key', 'loginKey', 'blob:32', 'one'], ['kdf', 'kdf', KDF, 'one'], ['sealed-key', 'sealedKey', `blob:${LIMITS.maxKeySize}`, 'one']];
const ACCOUNT = { attrs: [['address', 'address', 'address', { req: true }]], kids: [['public-key', 'publicKey', `blob:${LIMITS.maxKeySize}`, 'one'], ['kdf', 'kdf', KDF, 'one'], ['sealed-key', 'sealedKey', `blob:${LIMITS.maxKeySize}`, 'one']] };
const REF = () => ({ attrs: [['kind', 'kind', 'enum:folder|message|contact', { req: true }], ['id', 'id', 'id', { req: true }]] });
const EMPTY = {};
const IDS = [['id', 'ids', 'text:id', 'many', { min: 1, max: LIMITS.maxIDs, unique: true }]];
const FREF = ['folder', 'folder', 'folderRef', { req: true }];

/** REQUESTS and RESULTS: the schema of every request and result element, by name. */
export const REQUESTS = {
  'salt-lookup': { attrs: [['address', 'address', 'address', { req: true }]] },
  signup: { attrs: [['invite', 'invite', 'invite', { req: true }], ['address', 'address', 'address', { req: true }]], kids: [['public-key', 'publicKey', `blob:${LIMITS.maxKeySize}`, 'one'], ...KEYS_KIDS] },
  'change-passphrase': { kids: KEYS_KIDS },
  'get-account': EMPTY,
  'device-token': { attrs: [['current', 'current', 'b64', { min: 32, max: 32 }]] },
  logout: EMPTY,
  'public-keys': { kids: [['address', 'addresses', 'text:address', 'many', { min: 1, max: LIMITS.maxIDs, uniqueFold: true }]] },
  'list-folders': EMPTY,
  'create-folder': { attrs: [['name', 'name', 'folderName', { req: true }]] },
  'rename-folder': { attrs: [FREF, ['name', 'name', 'folderName', { req: true }]] },
  'delete-folder': { attrs: [FREF] },
  'list-messages': { attrs: [FREF, ['sort', 'sort', 'enum:received-desc|received-asc'], ['limit', 'limit', 'num', { min: 1, max: LIMITS.maxPageSize, over: 'limit-exceeded' }], ['cursor', 'cursor', 'cursor']] },
  fetch: { attrs: [['parts', 'parts', 'parts']], kids: IDS },
  'update-flags': { attrs: [['action', 'action', 'enum:add|remove|replace', { req: true }], ['flags', 'flags', 'flags']], kids: IDS },
  move: { attrs: [FREF], kids: IDS },
  copy: { attrs: [FREF], kids: IDS },
  delete: { kids: IDS },
  expunge: { attrs: [FREF] },
  append: { attrs: [FREF, ['flags', 'flags', 'flags'], ['received', 'received', 'time']], kids: [['body', 'body', `blob:${LIMITS.maxMessageSize}`, 'one'], ['summary', 'summary', `blob:${LIMITS.maxSummarySize}`, 'opt']] },
  send: {
    kids: [
      ['rcpt', 'recipients', { attrs: [['address', 'address', 'address', { req: true }], ['encrypted', 'encrypted', 'bool', { req: true, always: true }], ['allow-plaintext', 'allowPlaintext', 'bool', { onlyTrue: true }]], kids: [['summary', 'summary', `blob:${LIMITS.maxSummarySize}`, 'opt']] }, 'many', { min: 1, max: LIMITS.maxRecipients }],
      ['body', 'body', `blob:${LIMITS.maxMessageSize}`, 'one'],
      ['plaintext-body', 'plaintextBody', `blob:${LIMITS.maxMessageSize}`, 'opt'],
      ['sent-summary', 'sentSummary', `blob:${LIMITS.maxSummarySize}`, 'opt'],
    ],
  },
  'list-contacts': { attrs: [['limit', 'limit', 'num', { min: 1, max: LIMITS.maxPageSize, over: 'limit-exceeded' }], ['cursor', 'cursor', 'cursor']] },
  'put-contact': { kids: [['contact', 'contact', { attrs: [['id', 'id', 'id']], text: `blob:${LIMITS.maxContactSize}` }, 'one']] },
  'delete-contact': { attrs: [['contact-id', 'contactId', 'id', { req: true }]] },
  changes: { attrs: [['since', 'since', 'id', { req: true }], ['max-changes', 'maxChanges', 'num', { min: 1, max: LIMITS.maxChanges, over: 'limit-exceeded' }]] },
  wait: { attrs: [['since', 'since', 'id', { req: true }], ['timeout', 'timeout', 'num', { req: true, always: true, min: 0, max: LIMITS.maxWaitSeconds, over: 'limit-exceeded' }]] },
};

export const RESULTS = {
  'salt-lookup': { kids: [['kdf', 'kdf', KDF, 'one']] },
  signup: EMPTY,
  'change-passphrase': EMPTY,
  'get-account': { kids: [['account', 'account', ACCOUNT, 'one']] },
  'device-token': { attrs: [['token', 'token', 'b64', { req: true, min: 32, max: 32 }]] },
  logout: EMPTY,
  'public-keys': { kids: [['key', 'keys', { attrs: [['address', 'address', 'address', { req: true }]], text: `blob:${LIMITS.maxKeySize}`, textProp: 'key' }, 'many'], ['not-found', 'notFound', 'text:address', 'many']] },
  'list-folders': { kids: [['folder', 'folders', FOLDER, 'many']] },
  'create-folder': { kids: [['folder', 'folder', FOLDER, 'one']] },
  'rename-folder': { kids: [['folder', 'folder', FOLDER, 'one']] },
  'delete-folder': EMPTY,
  'list-messages': { attrs: [['folder-id', 'folderId', 'id', { req: true }], ['total', 'total', 'num', { req: true, always: true }], ['state', 'state', 'id', { req: true }], ['next-cursor', 'nextCursor', 'cursor']], kids: [['message', 'messages', MESSAGE, 'many']] },
  fetch: { kids: [['message', 'messages', MESSAGE, 'many'], ['not-found', 'notFound', 'text:id', 'many'], ['deferred', 'deferred', 'text:id', 'many']] },
  'update-flags': EMPTY,
  move: EMPTY,
  copy: { kids: [['copied', 'copies', { attrs: [['from', 'from', 'id', { req: true }], ['id', 'id', 'id', { req: true }]] }, 'many']] },
  delete: EMPTY,
  expunge: { attrs: [['count', 'count', 'num', { req: true, always: true }]] },
  append: { kids: [['message', 'message', MESSAGE, 'one']] },
  send: { kids: [['message', 'sent', MESSAGE, 'one'], ['rcpt', 'recipients', { attrs: [['address', 'address', 'address', { req: true }], ['status', 'status', 'enum:delivered|queued', { req: true }]] }, 'many']] },
  'list-contacts': { attrs: [['state', 'state', 'id', { req: true }], ['next-cursor', 'nextCursor', 'cursor']], kids: [['contact', 'contacts', { attrs: [['id', 'id', 'id', { req: true }]], text: `blob:${LIMITS.maxContactSize}` }, 'many']] },
  'put-contact': { kids: [['contact', 'contact', { attrs: [['id', 'id', 'id', { req: true }]] }, 'one']] },
  'delete-contact': EMPTY,
  changes: { attrs: [['state', 'state', 'id', { req: true }], ['has-more', 'hasMore', 'bool', { req: true, always: true }]], kids: [['created', 'created', REF(), 'many'], ['updated', 'updated', REF(), 'many'], ['destroyed', 'destroyed', REF(), 'many']] },
  wait: { attrs: [['state', 'state', 'id', { req: true }], ['changed', 'changed', 'bool', { req: true, always: true }]] },
};

// The put-contact result holds the contact's id only; flatten it to { id } like Go does.
const FLATTEN = { 'put-contact': (r) => ({ id: r.contact.id }) };
const UNFLATTEN = { 'put-contact': (r) => ({ contact: { id: r.id } }) };

// ---- encoding ---------------------------------------------------------------------------

function encodeAttrs(e, schema, obj) {
  for (const [xml, prop, type, opts = {}] of schema.attrs || []) {
    const v = obj[prop];
    if (type === 'folderRef') {
      if (v) {
        e.attr('folder', v.name);
        e.attr('folder-id', v.id);
      }
      continue;
    }
    if (v === undefined || v === null) continue;
    switch (type) {
      case 'bool':
        if (opts.onlyTrue && !v) break;
        e.attr(xml, v ? 'true' : 'false');
        break;
      case 'flags':
        if (v.length) e.attr(xml, v.join(' '));
        break;
      case 'b64':
        e.attr(xml, toBase64(v));
        break;
      case 'parts':
        e.attr(xml, Array.isArray(v) ? v.join(' ') : v);
        break;
      default:
        e.attr(xml, String(v));
    }
  }
}

function encodeText(e, type, v) {
  if (type.startsWith('blob:')) {
    if (v && v.length) e.chars(toBase64(v));
  } else {
    e.chars(escape(String(v), false));
  }
}

function encodeKids(e, schema, obj) {
  if (schema.text && obj[schema.textProp || 'data'] !== undefined) encodeText(e, schema.text, obj[schema.textProp || 'data']);
  for (const [xml, prop, type, mode] of schema.kids || []) {
    const v = obj[prop];
    if (v === undefined || v === null) continue;
    for (const item of mode === 'many' ? v : [v]) {
      e.start(xml);
      if (typeof type === 'string') {
        encodeText(e, type, item);
      } else {
        encodeAttrs(e, type, item);
        encodeKids(e, type, item);
      }
      e.end(xml);
    }
  }
}

/** encodeRequest writes a batch of requests in canonical form and returns the UTF-8 bytes. */
export function encodeRequest(requests) {
  return utf8(encodeRequestText(requests));
}

export function encodeRequestText(requests) {
  const e = new Encoder();
  e.start('xmap');
  e.attr('xmlns', NAMESPACE);
  e.attr('version', VERSION);
  for (const r of requests) {
    const schema = REQUESTS[r.op];
    if (!schema) throw new Error(`xmap: unknown request ${r.op}`);
    e.start(r.op);
    e.attr('id', r.id);
    encodeAttrs(e, schema, r);
    encodeKids(e, schema, r);
    e.end(r.op);
  }
  e.end('xmap');
  return e.finish();
}

/** encodeResponseText writes a response document ({ error } or { responses }). */
export function encodeResponseText(doc) {
  const e = new Encoder();
  e.start('xmap');
  e.attr('xmlns', NAMESPACE);
  e.attr('version', VERSION);
  const writeError = (err) => {
    e.start('error');
    e.attr('code', err.code);
    if (err.message) e.chars(escape(err.message, false));
    e.end('error');
  };
  if (doc.error) {
    writeError(doc.error);
  } else {
    for (const r of doc.responses) {
      const schema = RESULTS[r.op];
      if (!schema) throw new Error(`xmap: unknown result ${r.op}`);
      e.start(r.op);
      e.attr('id', r.id);
      if (r.error) {
        writeError(r.error);
      } else {
        const res = UNFLATTEN[r.op] ? UNFLATTEN[r.op](r.result) : r.result;
        encodeAttrs(e, schema, res);
        encodeKids(e, schema, res);
      }
      e.end(r.op);
    }
  }
  e.end('xmap');
  return e.finish();
}

// ---- decoding ---------------------------------------------------------------------------

class Reader {
  constructor() {
    this.err = null;
  }

  fail(n, code, msg) {
    if (!this.err) this.err = new XMAPError(code, `line ${n.line}: <${n.name}>: ${msg}`, true);
  }
}

function parseNum(s) {
  return /^[0-9]{1,18}$/.test(s) ? Number(s) : null;
}

function decodeB64Text(rd, n, text, max) {
  const raw = text.replace(/[ \t\n\r]/g, '');
  if (raw.length === 0) {
    rd.fail(n, 'bad-request', 'empty value');
    return null;
  }
  if (Math.floor(raw.length / 4) * 3 > max + 2) {
    rd.fail(n, 'too-large', `value larger than ${max} bytes`);
    return null;
  }
  let b;
  try {
    b = fromBase64(raw);
  } catch {
    rd.fail(n, 'bad-request', 'invalid base64');
    return null;
  }
  if (b.length > max) {
    rd.fail(n, 'too-large', `value larger than ${max} bytes`);
    return null;
  }
  if (b.length === 0) {
    rd.fail(n, 'bad-request', 'empty value');
    return null;
  }
  return b;
}

function decodeAttr(rd, n, get, [xml, prop, type, opts = {}], out) {
  if (type === 'folderRef') {
    const id = get('folder-id');
    const name = get('folder');
    if ((id === undefined) === (name === undefined)) rd.fail(n, 'bad-request', 'give exactly one of folder and folder-id');
    else if (id !== undefined && !validID(id)) rd.fail(n, 'bad-request', 'attribute "folder-id": invalid id');
    else if (name !== undefined && !validFolderName(name)) rd.fail(n, 'bad-request', 'attribute "folder": invalid folder name');
    else out[prop] = id !== undefined ? { id } : { name };
    return;
  }
  const v = get(xml);
  if (v === undefined || (v === '' && opts.req && type !== 'num')) {
    if (opts.req) rd.fail(n, 'bad-request', `missing attribute "${xml}"`);
    // Absent optional values read as their empty form, as Go's zero values.
    if (type === 'bool' && !opts.req) out[prop] = false;
    if (type === 'flags') out[prop] = [];
    return;
  }
  const bad = (what) => rd.fail(n, 'bad-request', `attribute "${xml}": ${what}`);
  switch (type) {
    case 'id':
      if (!validID(v)) return bad('invalid id');
      out[prop] = v;
      return;
    case 'cursor':
      if (!validCursor(v)) return bad('invalid cursor');
      out[prop] = v;
      return;
    case 'address':
      if (!validAddress(v)) return bad('invalid address');
      out[prop] = v;
      return;
    case 'folderName':
      if (!validFolderName(v)) return bad('invalid folder name');
      out[prop] = v;
      return;
    case 'invite':
      if (!validInvite(v)) return bad('invalid invite code');
      out[prop] = v;
      return;
    case 'num': {
      const x = parseNum(v);
      const min = opts.min ?? 0;
      const max = opts.max ?? 2 ** 53;
      if (x === null || x < min) return bad(`want a number from ${min} to ${max}`);
      if (x > max) {
        if (opts.over) return rd.fail(n, opts.over, `attribute "${xml}": more than ${max}`);
        return bad(`want a number from ${min} to ${max}`);
      }
      out[prop] = x;
      return;
    }
    case 'bool':
      if (v !== 'true' && v !== 'false') return bad('want true or false');
      out[prop] = v === 'true';
      return;
    case 'time': {
      const t = canonicalTime(v);
      if (!t) return bad('want an RFC 3339 time');
      out[prop] = t;
      return;
    }
    case 'b64': {
      let b;
      try {
        b = fromBase64(v);
      } catch {
        return bad(`want base64 of ${opts.min} to ${opts.max} bytes`);
      }
      if (b.length < opts.min || b.length > opts.max) return bad(`want base64 of ${opts.min} to ${opts.max} bytes`);
      out[prop] = b;
      return;
    }
    case 'flags': {
      const flags = [];
      for (const tok of v.split(' ').filter((x) => x !== '')) {
        const f = parseFlag(tok);
        if (!f) return bad(`invalid flag ${JSON.stringify(tok.slice(0, 64))}`);
        if (f === '\\Deleted' && !opts.deleted) return bad('\\Deleted is set by delete only');
        if (flags.includes(f)) return bad(`flag ${JSON.stringify(f)} given twice`);
        if (flags.length === LIMITS.maxFlags) return rd.fail(n, 'limit-exceeded', `attribute "${xml}": more than ${LIMITS.maxFlags} flags`);
        flags.push(f);
      }
      out[prop] = flags;
      return;
    }
    case 'parts': {
      const toks = v.split(' ').filter((x) => x !== '');
      if (toks.length === 0 || toks.some((t) => t !== 'summary' && t !== 'body') || new Set(toks).size !== toks.length) {
        return bad('want summary and/or body');
      }
      out[prop] = ['summary', 'body'].filter((p) => toks.includes(p)).join(' ');
      return;
    }
    case 'origin':
      // Who wrote a message's summary (XMAP.md, "Summary origin"). A value this reader
      // does not know reads as the cautious 'sender', never as an error, like Go's codec.
      out[prop] = ['server', 'sender', 'owner'].includes(v) ? v : 'sender';
      return;
    default:
      if (type.startsWith('enum:')) {
        if (!type.slice(5).split('|').includes(v)) return bad(`want ${type.slice(5).split('|').join(' or ')}`);
        out[prop] = v;
        return;
      }
      out[prop] = v;
  }
}

function decodeText(rd, n, type) {
  if (n.kids.length) return rd.fail(n.kids[0], 'bad-request', 'unexpected element');
  if (type.startsWith('blob:')) return decodeB64Text(rd, n, n.text, Number(type.slice(5)));
  const s = n.text;
  const ok = type === 'text:id' ? validID(s) : validAddress(s);
  if (!ok) rd.fail(n, 'bad-request', `invalid ${type.slice(5)}`);
  return s;
}

function decodeElement(rd, n, schema, out = {}, requestLevel = false) {
  const used = new Set();
  const get = (name) => {
    const a = n.attrs.find((x) => x.name === name && x.ns === '');
    if (!a) return undefined;
    used.add(a);
    return a.value;
  };
  for (const spec of schema.attrs || []) decodeAttr(rd, n, get, spec, out);
  decodeBody(rd, n, schema, out);
  for (const a of n.attrs) {
    // The request id of a top-level element is read by the caller.
    if (!used.has(a) && !(requestLevel && a.name === 'id')) rd.fail(n, 'bad-request', `unknown attribute "${a.name}"`);
  }
  return out;
}

function decodeBody(rd, n, schema, out) {
  if (schema.text) {
    if (n.kids.length) return rd.fail(n.kids[0], 'bad-request', 'unexpected element');
    out[schema.textProp || 'data'] = decodeB64Text(rd, n, n.text, Number(schema.text.slice(5)));
    return;
  }
  if (!/^[ \t\n\r]*$/.test(n.text)) return rd.fail(n, 'bad-request', 'holds no text');
  const kids = schema.kids || [];
  const seen = new Map();
  for (const [, prop, , mode] of kids) if (mode === 'many') out[prop] = [];
  for (const k of n.kids) {
    if (rd.err) return;
    const spec = kids.find((s) => s[0] === k.name);
    if (!spec) return rd.fail(k, 'bad-request', 'unexpected element');
    const [, prop, type, mode, opts = {}] = spec;
    let v;
    if (typeof type === 'string') {
      v = decodeText(rd, k, type);
    } else {
      v = decodeElement(rd, k, type);
    }
    if (mode === 'many') {
      const list = out[prop];
      if (opts.max && list.length >= opts.max) return rd.fail(k, 'limit-exceeded', `more than ${opts.max}`);
      if (opts.unique && list.includes(v)) return rd.fail(k, 'bad-request', `id ${JSON.stringify(v)} given twice`);
      if (opts.uniqueFold && list.some((x) => x.toLowerCase() === String(v).toLowerCase())) return rd.fail(k, 'bad-request', 'address given twice');
      list.push(v);
    } else {
      if (seen.has(prop)) return rd.fail(k, 'bad-request', 'element given twice');
      seen.set(prop, true);
      out[prop] = v;
    }
  }
  for (const [xml, prop, , mode, opts = {}] of kids) {
    if (rd.err) return;
    if (mode === 'one' && !seen.has(prop)) rd.fail(n, 'bad-request', `missing <${xml}>`);
    if (mode === 'many' && opts.min && out[prop].length < opts.min) rd.fail(n, 'bad-request', `no <${xml}> given`);
  }
}

function readRoot(text, maxSize) {
  if (text.length > maxSize) throw new XMAPError('too-large', `document larger than ${maxSize} bytes`, true);
  let root;
  try {
    root = parseXML(text, LIMITS);
  } catch (err) {
    if (err instanceof XMLError) throw new XMAPError(err.code, err.message, true);
    throw err;
  }
  if (root.ns !== NAMESPACE) {
    if (root.ns.startsWith(NAMESPACE_PREFIX)) throw new XMAPError('unsupported-version', `namespace ${JSON.stringify(root.ns)} is not supported`, true);
    throw new XMAPError('bad-request', `line ${root.line}: element <${root.name}> is not in namespace ${NAMESPACE}`, true);
  }
  if (root.name !== 'xmap') throw new XMAPError('bad-request', `root element must be <xmap>, not <${root.name}>`, true);
  const version = root.attrs.find((a) => a.name === 'version' && a.ns === '');
  if (!version) throw new XMAPError('bad-request', '<xmap>: missing version attribute', true);
  if (version.value !== VERSION) throw new XMAPError('unsupported-version', `version ${JSON.stringify(version.value)} is not supported`, true);
  for (const a of root.attrs) if (a.name !== 'version' || a.ns !== '') throw new XMAPError('bad-request', `<xmap>: unknown attribute "${a.name}"`, true);
  const check = (n) => {
    if (n.ns !== NAMESPACE) throw new XMAPError('bad-request', `line ${n.line}: element <${n.name}> is not in namespace ${NAMESPACE}`, true);
    for (const a of n.attrs) if (a.ns !== '') throw new XMAPError('bad-request', `line ${n.line}: <${n.name}>: namespaced attribute "${a.name}" not allowed`, true);
    n.kids.forEach(check);
  };
  root.kids.forEach(check);
  if (!/^[ \t\n\r]*$/.test(root.text)) throw new XMAPError('bad-request', '<xmap> holds no text', true);
  return root;
}

function asText(doc) {
  if (typeof doc === 'string') return doc;
  try {
    return fromUtf8(doc);
  } catch {
    throw new XMAPError('bad-request', 'the document is not UTF-8', true);
  }
}

function requestID(rd, n) {
  const a = n.attrs.find((x) => x.name === 'id');
  if (!a) rd.fail(n, 'bad-request', 'missing attribute "id"');
  else if (!validID(a.value)) rd.fail(n, 'bad-request', 'attribute "id": invalid id');
  return a ? a.value : '';
}

/** decodeRequest reads a request document into a list of requests (for tests and tools). */
export function decodeRequest(doc) {
  const root = readRoot(asText(doc), LIMITS.maxDocumentSize);
  if (root.kids.length > LIMITS.maxBatchSize) throw new XMAPError('limit-exceeded', `more than ${LIMITS.maxBatchSize} requests in one document`, true);
  const rd = new Reader();
  const ids = new Set();
  const out = [];
  for (const k of root.kids) {
    const schema = REQUESTS[k.name];
    if (!schema) throw new XMAPError('bad-request', `line ${k.line}: unknown request <${k.name}>`, true);
    const id = requestID(rd, k);
    if (ids.has(id)) rd.fail(k, 'bad-request', `request id ${JSON.stringify(id)} used twice`);
    ids.add(id);
    const r = decodeElement(rd, k, schema, { op: k.name, id }, true);
    if (k.name === 'send' && !rd.err) checkSend(rd, k, r);
    if (rd.err) throw rd.err;
    out.push(r);
  }
  return out;
}

function checkSend(rd, n, r) {
  const seen = new Set();
  for (const x of r.recipients) {
    if (seen.has(x.address.toLowerCase())) return rd.fail(n, 'bad-request', 'recipient given twice');
    seen.add(x.address.toLowerCase());
  }
  const needPlain = r.recipients.some((x) => !x.encrypted);
  if (needPlain && !r.plaintextBody) rd.fail(n, 'bad-request', 'a recipient is not encrypted to but there is no <plaintext-body>');
  if (!needPlain && r.plaintextBody) rd.fail(n, 'bad-request', '<plaintext-body> given but every recipient is encrypted to');
}

const CODE_RE = /^[a-z0-9-]{1,64}$/;

function decodeError(rd, n) {
  const code = n.attrs.find((a) => a.name === 'code');
  if (!code || !CODE_RE.test(code.value)) rd.fail(n, 'bad-request', 'invalid error code');
  for (const a of n.attrs) if (a.name !== 'code') rd.fail(n, 'bad-request', `unknown attribute "${a.name}"`);
  if (n.kids.length) rd.fail(n.kids[0], 'bad-request', 'unexpected element');
  return { code: code ? code.value : '', message: n.text };
}

/** decodeResponse reads a response document: { error } (document-level) or { responses }. */
export function decodeResponse(doc) {
  const root = readRoot(asText(doc), LIMITS.maxResponseSize);
  const rd = new Reader();
  if (root.kids.length && root.kids[0].name === 'error') {
    if (root.kids.length !== 1) throw new XMAPError('bad-request', 'a document-level <error> must be alone', true);
    const err = decodeError(rd, root.kids[0]);
    if (rd.err) throw rd.err;
    return { error: err };
  }
  const responses = [];
  for (const k of root.kids) {
    const schema = RESULTS[k.name];
    if (!schema) throw new XMAPError('bad-request', `line ${k.line}: unknown result <${k.name}>`, true);
    const id = requestID(rd, k);
    const r = { op: k.name, id };
    if (k.kids.length && k.kids[0].name === 'error') {
      if (k.kids.length !== 1) rd.fail(k, 'bad-request', '<error> must be the only child');
      for (const a of k.attrs) if (a.name !== 'id') rd.fail(k, 'bad-request', `unknown attribute "${a.name}"`);
      r.error = decodeError(rd, k.kids[0]);
    } else {
      const res = decodeElement(rd, k, schema, {}, true);
      r.result = FLATTEN[k.name] && !rd.err ? FLATTEN[k.name](res) : res;
    }
    if (rd.err) throw rd.err;
    responses.push(r);
  }
  return { responses };
}
