// Internet messages (RFC 5322, MIME RFC 2045–2047 and 2231): reading what arrives, in any
// shape senders produce, and writing what the Go client writes (docs/CLIENT.md "Sending").
// Messages are handled as bytes; header and boundary scanning works on a "binary string"
// (one character per byte), and text is decoded by its declared charset at the end.
import { concat, utf8 } from './bytes.js';

const CRLF = '\r\n';

// ---- bytes <-> binary strings ------------------------------------------------------------

/** binaryString maps each byte to the character of the same code (no decoding). */
export function binaryString(bytes) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += 32768) {
    parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 32768)));
  }
  return parts.join('');
}

/** binaryBytes is the inverse of binaryString. */
export function binaryBytes(s) {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** decodeCharset decodes bytes in a MIME charset; unknown charsets are read as UTF-8 if
 * valid, else as Windows-1252, rather than shown as raw bytes. */
export function decodeCharset(bytes, charset) {
  let label = (charset || 'utf-8').trim().toLowerCase();
  if (label === 'us-ascii' || label === 'ascii' || label === '') label = 'utf-8';
  try {
    return new TextDecoder(label).decode(bytes);
  } catch {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return new TextDecoder('windows-1252').decode(bytes);
    }
  }
}

// ---- headers -----------------------------------------------------------------------------

/** splitMessage splits raw bytes at the first empty line: [header text, body bytes]. */
export function splitMessage(bytes) {
  const s = binaryString(bytes.subarray(0, Math.min(bytes.length, 1 << 20)));
  // An entity may start with its body when it has no header at all.
  if (s.startsWith('\r\n')) return ['', bytes.subarray(2)];
  if (s.startsWith('\n')) return ['', bytes.subarray(1)];
  const m = /\r?\n\r?\n/.exec(s);
  if (!m) return [s, new Uint8Array(0)];
  return [s.slice(0, m.index), bytes.subarray(m.index + m[0].length)];
}

/** Header is an ordered list of fields with case-insensitive lookup. Values are the raw,
 * unfolded field bodies (binary strings). */
export class Header {
  constructor(fields = []) {
    this.fields = fields; // [[name, value]]
  }

  static parse(text) {
    const fields = [];
    for (const line of text.split(/\r?\n/)) {
      if (/^[ \t]/.test(line) && fields.length) {
        fields[fields.length - 1][1] += ' ' + line.trim();
        continue;
      }
      const i = line.indexOf(':');
      if (i <= 0) continue; // not a field (a broken or mbox "From " line): skipped
      const name = line.slice(0, i).trim();
      if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
      fields.push([name, line.slice(i + 1).trim()]);
    }
    return new Header(fields);
  }

  get(name) {
    const n = name.toLowerCase();
    const f = this.fields.find(([k]) => k.toLowerCase() === n);
    return f ? f[1] : '';
  }

  getAll(name) {
    const n = name.toLowerCase();
    return this.fields.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
  }

  has(name) {
    const n = name.toLowerCase();
    return this.fields.some(([k]) => k.toLowerCase() === n);
  }

  set(name, value) {
    this.delete(name);
    this.fields.push([name, value]);
  }

  delete(name) {
    const n = name.toLowerCase();
    this.fields = this.fields.filter(([k]) => k.toLowerCase() !== n);
  }
}

/** decodeWords decodes RFC 2047 encoded words in a header value (a binary string); raw
 * 8-bit text is read as UTF-8 when valid. */
export function decodeWords(value) {
  const raw = /[\x80-\xff]/.test(value) ? decodeCharset(binaryBytes(value), 'utf-8') : value;
  // White space between adjacent encoded words is dropped (§6.2).
  return raw
    .replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)/g, '$1')
    .replace(/=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g, (m, charset, enc, text) => {
      try {
        const cs = charset.split('*')[0];
        const bytes = enc.toUpperCase() === 'B'
          ? base64Lenient(text)
          : binaryBytes(text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (x, h) => String.fromCharCode(parseInt(h, 16))));
        return decodeCharset(bytes, cs);
      } catch {
        return m;
      }
    });
}

/** parseParams reads "value; a=b; c*=utf-8''x" into [value (lower case), params]. */
export function parseParams(v) {
  const out = {};
  const parts = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (q) {
      if (c === '\\' && i + 1 < v.length) {
        cur += v[++i];
        continue;
      }
      if (c === '"') q = false;
      cur += c;
    } else if (c === '"') {
      q = true;
      cur += c;
    } else if (c === ';') {
      parts.push(cur);
      cur = '';
    } else if (c === '(') {
      // A comment: skipped.
      let depth = 1;
      while (++i < v.length && depth > 0) {
        if (v[i] === '(') depth++;
        else if (v[i] === ')') depth--;
      }
      i--;
      if (v[i] !== ')') i++;
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  const value = parts.shift().trim().toLowerCase();
  const ext = {};
  for (const p of parts) {
    const i = p.indexOf('=');
    if (i < 0) continue;
    const name = p.slice(0, i).trim().toLowerCase();
    let val = p.slice(i + 1).trim();
    if (val.startsWith('"') && val.endsWith('"') && val.length >= 2) val = val.slice(1, -1);
    // RFC 2231: name* (encoded), name*N (a continuation), name*N* (an encoded continuation).
    const m = /^([^*]+)\*(\d+)?(\*)?$/.exec(name);
    if (m) {
      const idx = m[2] === undefined ? 0 : Number(m[2]);
      const encoded = m[2] === undefined || m[3] !== undefined;
      (ext[m[1]] ||= []).push({ idx, val, encoded });
    } else if (!(name in out)) {
      out[name] = decodeWords(val);
    }
  }
  // RFC 2231: continuations joined in order; the first encoded section names the charset.
  for (const [name, sections] of Object.entries(ext)) {
    sections.sort((a, b) => a.idx - b.idx);
    let charset = 'utf-8';
    let bytes = '';
    for (const s of sections) {
      let val = s.val;
      if (s.encoded) {
        if (s.idx === 0) {
          const m = /^([^']*)'[^']*'(.*)$/.exec(val);
          if (m) {
            charset = m[1] || 'utf-8';
            val = m[2];
          }
        }
        bytes += val.replace(/%([0-9A-Fa-f]{2})/g, (x, h) => String.fromCharCode(parseInt(h, 16)));
      } else {
        bytes += val;
      }
    }
    out[name] = decodeCharset(binaryBytes(bytes), charset);
  }
  return [value, out];
}

// ---- addresses ----------------------------------------------------------------------------

/**
 * parseAddressList reads an address list leniently: display names (quoted or not, encoded
 * words decoded), angle addresses, bare addresses, comments and groups. It returns
 * [{ name, address }]; an entry without '@' keeps its text as name.
 */
export function parseAddressList(value) {
  const s = decodeWords(value);
  const out = [];
  let i = 0;
  let name = '';
  let addr = null;
  let bare = '';
  let comment = '';
  const flush = () => {
    const n = name.replace(/\s+/g, ' ').trim() || comment.trim();
    const b = bare.replace(/\s+/g, ' ').trim();
    if (addr !== null) out.push({ name: n, address: addr.trim() });
    else if (b.includes('@') && !b.includes(' ')) out.push({ name: comment.trim(), address: b });
    else if (b || n) out.push({ name: b || n, address: '' });
    name = '';
    addr = null;
    bare = '';
    comment = '';
  };
  while (i < s.length) {
    const c = s[i];
    if (c === '"') {
      let j = i + 1;
      let q = '';
      while (j < s.length && s[j] !== '"') {
        if (s[j] === '\\' && j + 1 < s.length) j++;
        q += s[j++];
      }
      name += q;
      bare += q;
      i = j + 1;
    } else if (c === '(') {
      let depth = 1;
      let j = i + 1;
      let text = '';
      while (j < s.length && depth > 0) {
        if (s[j] === '(') depth++;
        else if (s[j] === ')') depth--;
        if (depth > 0) text += s[j];
        j++;
      }
      // A comment names the address when nothing else does ("a@b.c (Name)").
      if (!comment) comment = text;
      i = j;
    } else if (c === '<') {
      const j = s.indexOf('>', i);
      addr = s.slice(i + 1, j < 0 ? s.length : j).replace(/^@[^:]*:/, '');
      i = j < 0 ? s.length : j + 1;
    } else if (c === ',' || c === ';') {
      flush();
      i++;
    } else if (c === ':' && addr === null && !bare.includes('@')) {
      // A group name: its members follow.
      name = '';
      bare = '';
      i++;
    } else {
      name += c;
      bare += c;
      i++;
    }
  }
  flush();
  return out;
}

/** formatAddress renders { name, address } for display: "Name <addr>" or "addr". */
export function formatAddress({ name, address }) {
  if (!name || name === address) return address;
  if (!address) return name;
  return `${name} <${address}>`;
}

// ---- transfer encodings -----------------------------------------------------------------

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64REV = (() => {
  const r = new Int16Array(256).fill(-1);
  for (let i = 0; i < 64; i++) r[B64.charCodeAt(i)] = i;
  return r;
})();

/** base64Lenient decodes base64 ignoring anything outside the alphabet, as mail readers do. */
export function base64Lenient(s) {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4) + 3);
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 61) break; // '=' ends the data
    const v = c < 256 ? B64REV[c] : -1;
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out.slice(0, o);
}

/** quotedPrintableDecode decodes QP (a binary string) leniently. */
export function quotedPrintableDecode(s) {
  const out = new Uint8Array(s.length);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 61) {
      if (s[i + 1] === '\r' && s[i + 2] === '\n') {
        i += 2;
        continue;
      }
      if (s[i + 1] === '\n') {
        i += 1;
        continue;
      }
      const h = s.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(h)) {
        out[o++] = parseInt(h, 16);
        i += 2;
        continue;
      }
      // A soft break followed by trailing white space, or a stray '=': kept literally.
      const rest = /^[ \t]*\r?\n/.exec(s.slice(i + 1, i + 80));
      if (rest) {
        i += rest[0].length;
        continue;
      }
    }
    out[o++] = c & 0xff;
  }
  return out.slice(0, o);
}

/** base64Lines writes base64 in lines of 76 characters, CRLF-terminated. */
export function base64Lines(bytes) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += 57) {
    let s = '';
    const end = Math.min(i + 57, bytes.length);
    for (let j = i; j < end; j += 3) {
      const n = (bytes[j] << 16) | ((j + 1 < end ? bytes[j + 1] : 0) << 8) | (j + 2 < end ? bytes[j + 2] : 0);
      s += B64[n >> 18] + B64[(n >> 12) & 63] + (j + 1 < end ? B64[(n >> 6) & 63] : '=') + (j + 2 < end ? B64[n & 63] : '=');
    }
    parts.push(s, CRLF);
  }
  return parts.join('');
}

/** quotedPrintable encodes UTF-8 text (line ends: any) as QP with CRLF line ends, lines of
 * at most 76 characters (RFC 2045 §6.7). */
export function quotedPrintable(text) {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  for (const line of lines) {
    const bytes = utf8(line);
    let cur = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      const last = i === bytes.length - 1;
      let tok;
      if ((b === 0x20 || b === 0x09) && last) tok = '=' + b.toString(16).toUpperCase().padStart(2, '0');
      else if ((b >= 33 && b <= 126 && b !== 61) || b === 0x20 || b === 0x09) tok = String.fromCharCode(b);
      else tok = '=' + b.toString(16).toUpperCase().padStart(2, '0');
      if (cur.length + tok.length > 75) {
        out.push(cur + '=');
        cur = '';
      }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join(CRLF);
}

// ---- reading entities --------------------------------------------------------------------

/**
 * parseEntity reads a MIME entity (bytes) into
 * { header, type, params, disposition, dparams, body (decoded bytes, leaves only),
 *   parts (multiparts only) }. Nesting is bounded by depth.
 */
export function parseEntity(bytes, depth = 0, defaultType = 'text/plain') {
  const [htext, body] = splitMessage(bytes);
  const header = Header.parse(htext);
  let [type, params] = parseParams(header.get('Content-Type'));
  if (!/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type)) [type, params] = [defaultType, type ? params : {}];
  const [disposition, dparams] = parseParams(header.get('Content-Disposition'));
  const ent = { header, type, params, disposition, dparams, body: null, parts: null };
  if (type.startsWith('multipart/') && params.boundary && depth < 12) {
    const child = type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
    ent.parts = splitMultipart(body, params.boundary).slice(0, 256).map((p) => parseEntity(p, depth + 1, child));
    return ent;
  }
  const cte = header.get('Content-Transfer-Encoding').trim().toLowerCase();
  if (cte === 'base64') ent.body = base64Lenient(binaryString(body));
  else if (cte === 'quoted-printable') ent.body = quotedPrintableDecode(binaryString(body));
  else ent.body = body;
  return ent;
}

/** splitMultipart returns the body parts (bytes) between the boundary delimiters. */
export function splitMultipart(body, boundary) {
  const s = binaryString(body);
  const delim = '--' + boundary;
  const parts = [];
  let start = -1;
  let i = 0;
  for (;;) {
    const j = s.indexOf(delim, i);
    if (j < 0) break;
    const atLineStart = j === 0 || s[j - 1] === '\n';
    const after = s.slice(j + delim.length, j + delim.length + 2);
    const close = after === '--';
    const lineEnd = s.slice(j + delim.length).match(close ? /^--[ \t]*(\r?\n|$)/ : /^[ \t]*(\r?\n|$)/);
    if (!atLineStart || !lineEnd) {
      i = j + delim.length;
      continue;
    }
    if (start >= 0) {
      // The CRLF before a delimiter belongs to the delimiter.
      let end = j;
      if (s[end - 1] === '\n') end--;
      if (s[end - 1] === '\r') end--;
      parts.push(body.subarray(start, Math.max(start, end)));
    }
    if (close) return parts;
    start = j + delim.length + lineEnd[0].length;
    i = start;
  }
  // A missing close delimiter: the last part runs to the end.
  if (start >= 0) parts.push(body.subarray(start));
  return parts;
}

/** entityText decodes a leaf entity's body by its charset. */
export function entityText(ent) {
  return decodeCharset(ent.body, ent.params.charset);
}

function isAttachmentPart(ent) {
  return ent.disposition === 'attachment' || Boolean(ent.dparams.filename || ent.params.name);
}

/**
 * walkParts fills { text, html, attachments } from an entity as the Go client does: the
 * first text/plain and text/html leaves without a file name are the text and the HTML,
 * every other leaf is an attachment, PGP/MIME control parts are skipped.
 */
export function walkParts(ent, msg = { text: '', html: '', hasText: false, hasHTML: false, attachments: [] }) {
  if (ent.parts) {
    for (const p of ent.parts) walkParts(p, msg);
    return msg;
  }
  const t = ent.type;
  const named = Boolean(ent.dparams.filename || ent.params.name);
  if (ent.disposition !== 'attachment' && !named && t === 'text/plain' && !msg.hasText) {
    msg.text = entityText(ent);
    msg.hasText = true;
  } else if (ent.disposition !== 'attachment' && !named && t === 'text/html' && !msg.hasHTML) {
    msg.html = entityText(ent);
    msg.hasHTML = true;
  } else if (t === 'application/pgp-encrypted' || t === 'application/pgp-signature') {
    // PGP/MIME control parts are not attachments.
  } else {
    const cid = ent.header.get('Content-ID').trim().replace(/^<|>$/g, '');
    msg.attachments.push({
      filename: ent.dparams.filename || ent.params.name || '',
      contentType: t,
      data: ent.body,
      contentId: cid,
      inline: ent.disposition === 'inline' || (!isAttachmentPart(ent) && Boolean(cid)),
    });
  }
  return msg;
}

/** parseDate reads an RFC 5322 date; null when absent or unreadable. */
export function parseDate(v) {
  if (!v) return null;
  const cleaned = v.replace(/\([^)]*\)/g, ' ').replace(/\s+/g, ' ').trim();
  const t = Date.parse(cleaned);
  return Number.isNaN(t) ? null : new Date(t);
}

// ---- writing ------------------------------------------------------------------------------

function needsEncoding(s) {
  return /[^\x20-\x7e]/.test(s);
}

/** encodeWord writes s as RFC 2047 Q/B encoded words, each at most 75 characters, separated
 * by folding white space. ASCII-only text is returned as is. */
export function encodeWords(s) {
  if (!needsEncoding(s)) return s;
  const words = [];
  let cur = [];
  let len = 0;
  // Whole characters per word, so no word splits a UTF-8 sequence. B encoding: 75 − 12 for
  // "=?utf-8?b?" and "?=" leaves 63 characters, 45 bytes.
  for (const ch of s) {
    const b = utf8(ch);
    if (len + b.length > 45) {
      words.push(cur);
      cur = [];
      len = 0;
    }
    cur.push(b);
    len += b.length;
  }
  if (cur.length) words.push(cur);
  return words.map((w) => `=?utf-8?b?${base64Lines(concat(...w)).replace(/\r\n/g, '')}?=`).join('\r\n ');
}

function quoteName(name) {
  if (needsEncoding(name)) return encodeWords(name);
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(name)) return name;
  return '"' + name.replace(/(["\\])/g, '\\$1') + '"';
}

/** formatAddressHeader writes an address list for a header field. */
export function formatAddressHeader(list) {
  return list.map((a) => (a.name ? `${quoteName(a.name)} <${a.address}>` : a.address)).join(', ');
}

/** formatParam writes one MIME parameter, with RFC 2231 encoding for non-ASCII values. */
export function formatParam(name, value) {
  if (needsEncoding(value)) {
    const enc = Array.from(utf8(value), (b) => (/[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b))
      ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0'))).join('');
    return `${name}*=utf-8''${enc}`;
  }
  if (/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(value)) return `${name}=${value}`;
  return `${name}="${value.replace(/(["\\])/g, '\\$1')}"`;
}

function mediaType(type, params) {
  return [type, ...Object.entries(params).map(([k, v]) => formatParam(k, v))].join('; ');
}

// foldHeader folds a field at spaces so that lines stay under 78 characters where possible.
function foldHeader(name, value) {
  const line = `${name}: ${value}`;
  if (line.length <= 78 || value.includes('\r\n')) return line + CRLF;
  const out = [];
  let cur = '';
  for (const word of line.split(' ')) {
    if (cur && cur.length + 1 + word.length > 76) {
      out.push(cur);
      cur = ' ' + word;
    } else {
      cur = cur ? cur + ' ' + word : word;
    }
  }
  out.push(cur);
  return out.join(CRLF) + CRLF;
}

/** formatDate writes an RFC 5322 date in UTC ("Sat, 01 Mar 2025 09:29:40 +0000"). */
export function formatDate(d) {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

function randomBoundary() {
  const b = crypto.getRandomValues(new Uint8Array(15));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const TYPES = {
  txt: 'text/plain', html: 'text/html', htm: 'text/html', pdf: 'application/pdf', png: 'image/png',
  jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', svg: 'image/svg+xml',
  zip: 'application/zip', gz: 'application/gzip', json: 'application/json', csv: 'text/csv',
  ics: 'text/calendar', doc: 'application/msword', xml: 'text/xml',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  odt: 'application/vnd.oasis.opendocument.text', mp3: 'audio/mpeg', mp4: 'video/mp4', asc: 'application/pgp-keys',
};

/** typeForFilename guesses a media type from a file name's extension. */
export function typeForFilename(name) {
  const m = /\.([A-Za-z0-9]+)$/.exec(name);
  return (m && TYPES[m[1].toLowerCase()]) || 'application/octet-stream';
}

function headerText(fields) {
  return fields.map(([k, v]) => foldHeader(k, v)).join('');
}

/**
 * buildMessage writes a message as the Go client's buildMessage does: the given header
 * fields (From, To, Cc, Date, Message-ID), Subject, MIME-Version, then a quoted-printable
 * text/plain body, or multipart/mixed with the text inline and one base64 part per
 * attachment ({ filename, contentType, data }). protectedHeaders marks the top-level
 * Content-Type with protected-headers="v1" (the inner entity of PGP/MIME).
 */
export function buildMessage(fields, subject, text, attachments = [], protectedHeaders = false, boundary = randomBoundary()) {
  const extra = protectedHeaders ? { 'protected-headers': 'v1' } : {};
  const head = [...fields, ['Subject', encodeWords(subject)], ['MIME-Version', '1.0']];
  const body = quotedPrintable(text);
  if (attachments.length === 0) {
    head.push(['Content-Type', mediaType('text/plain', { charset: 'utf-8', ...extra })], ['Content-Transfer-Encoding', 'quoted-printable']);
    return utf8(headerText(head) + CRLF + body);
  }
  head.push(['Content-Type', mediaType('multipart/mixed', { boundary, ...extra })]);
  const out = [headerText(head), CRLF];
  out.push(`--${boundary}${CRLF}`, headerText([
    ['Content-Disposition', 'inline'],
    ['Content-Transfer-Encoding', 'quoted-printable'],
    ['Content-Type', mediaType('text/plain', { charset: 'utf-8' })],
  ]), CRLF, body, CRLF);
  for (const a of attachments) {
    const name = a.filename.replace(/^.*[\\/]/, '') || 'attachment';
    const type = a.contentType || typeForFilename(name);
    out.push(`--${boundary}${CRLF}`, headerText([
      ['Content-Disposition', `attachment; ${formatParam('filename', name)}`],
      ['Content-Transfer-Encoding', 'base64'],
      ['Content-Type', mediaType(/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/i.test(type) ? type.toLowerCase() : 'application/octet-stream', { name })],
    ]), CRLF, base64Lines(a.data));
  }
  out.push(`--${boundary}--${CRLF}`);
  return utf8(out.join(''));
}

/**
 * pgpMIME wraps an armored OpenPGP message as multipart/encrypted (RFC 3156 §4) under the
 * given header fields, with the subject replaced by "..." (the real one is protected inside).
 */
export function pgpMIME(fields, armored, boundary = randomBoundary()) {
  const crlf = armored.replace(/\r?\n/g, CRLF).replace(/(\r\n)?$/, CRLF);
  const head = [...fields, ['Subject', '...'], ['MIME-Version', '1.0'],
    ['Content-Type', mediaType('multipart/encrypted', { boundary, protocol: 'application/pgp-encrypted' })]];
  return utf8([
    headerText(head), CRLF,
    `--${boundary}${CRLF}`,
    headerText([['Content-Description', 'PGP/MIME version identification'], ['Content-Type', 'application/pgp-encrypted']]), CRLF,
    `Version: 1${CRLF}`,
    `--${boundary}${CRLF}`,
    headerText([['Content-Description', 'OpenPGP encrypted message'], ['Content-Disposition', 'inline; filename=encrypted.asc'], ['Content-Type', 'application/octet-stream; name=encrypted.asc']]), CRLF,
    crlf,
    `--${boundary}--${CRLF}`,
  ].join(''));
}

/** snippet is the first 200 characters of text with white space collapsed, as summaries hold. */
export function snippet(text, max = 200) {
  const collapsed = text.replace(/[\p{Cc}\p{Cf}]/gu, (c) => (/\s/.test(c) ? ' ' : '')).replace(/\s+/gu, ' ').trim();
  return Array.from(collapsed).slice(0, max).join('');
}

/** htmlToText extracts the readable text of an HTML document (for snippets and replies)
 * without rendering it. */
export function htmlToText(html) {
  return html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(script|style|head|title)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<(br|p|div|li|tr|h[1-6]|blockquote)\b[^>]*>/gi, '\n')
    .replace(/<[^>]*>/g, '')
    .replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, ref) => {
      const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
      if (ref[0] === '#') {
        const cp = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : '';
      }
      return named[ref.toLowerCase()] ?? m;
    })
    .replace(/[ \t]+\n/g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
