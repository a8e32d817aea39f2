// Reading and writing Internet messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseEntity, walkParts, parseAddressList, formatAddress, decodeWords, parseParams, quotedPrintable,
  quotedPrintableDecode, base64Lenient, binaryString, binaryBytes, buildMessage, splitMultipart, encodeWords,
  formatAddressHeader, formatParam, formatDate, snippet, htmlToText, parseDate, entityText, pgpMIME,
} from '../src/lib/mime.js';
import { utf8, fromUtf8 } from '../src/lib/bytes.js';

const crlf = (s) => utf8(s.replace(/\n/g, '\r\n'));

test('a multipart message with charsets, encodings and an attachment', () => {
  const raw = crlf(`From: =?ISO-8859-1?Q?J=F6rg?= <joerg@remote.example>
To: "Alice, A." <alice@example.test>, bob@example.test
Subject: =?utf-8?b?SGVsbG8gd8O2cmxk?= =?utf-8?q?_again?=
Date: Sat, 01 Mar 2025 09:29:40 +0000
Message-ID: <abc@remote.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

preamble
--b1
Content-Type: multipart/alternative; boundary=b2

--b2
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe, soft=
 break
--b2
Content-Type: text/html; charset=utf-8

<p>Gr\u00fc\u00dfe</p>
--b2--
--b1
Content-Type: application/pdf; name="r\u00e9sum\u00e9.pdf"
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0x
LjQK
--b1--
epilogue`);
  const ent = parseEntity(raw);
  assert.equal(ent.type, 'multipart/mixed');
  const parts = walkParts(ent);
  assert.equal(parts.text, 'Gr\u00fc\u00dfe, soft break');
  assert.equal(parts.html, '<p>Gr\u00fc\u00dfe</p>');
  assert.equal(parts.attachments.length, 1);
  assert.equal(parts.attachments[0].filename, 'r\u00e9sum\u00e9.pdf');
  assert.equal(parts.attachments[0].contentType, 'application/pdf');
  assert.equal(fromUtf8(parts.attachments[0].data), '%PDF-1.4\n');
  assert.equal(decodeWords(ent.header.get('Subject')), 'Hello w\u00f6rld again');
  assert.deepEqual(parseAddressList(ent.header.get('From')), [{ name: 'J\u00f6rg', address: 'joerg@remote.example' }]);
  assert.deepEqual(parseAddressList(ent.header.get('To')), [{ name: 'Alice, A.', address: 'alice@example.test' }, { name: '', address: 'bob@example.test' }]);
  assert.equal(parseDate(ent.header.get('Date')).toISOString(), '2025-03-01T09:29:40.000Z');
});

test('bare LF, no MIME header, folded fields', () => {
  const ent = parseEntity(utf8('Subject: a\n long subject\nFrom: x@y.z (X Person)\n\nbody line\n'));
  assert.equal(ent.type, 'text/plain');
  assert.equal(ent.header.get('subject'), 'a long subject');
  assert.equal(entityText(ent), 'body line\n');
  assert.deepEqual(parseAddressList(ent.header.get('From')), [{ name: 'X Person', address: 'x@y.z' }]);
});

test('address lists', () => {
  const cases = [
    ['a@b.c', [{ name: '', address: 'a@b.c' }]],
    ['A B <a@b.c>, "C, D" <c@d.e>', [{ name: 'A B', address: 'a@b.c' }, { name: 'C, D', address: 'c@d.e' }]],
    ['undisclosed-recipients:;', []],
    ['team: a@b.c, d@e.f;', [{ name: '', address: 'a@b.c' }, { name: '', address: 'd@e.f' }]],
    ['<a@b.c>', [{ name: '', address: 'a@b.c' }]],
  ];
  for (const [v, want] of cases) assert.deepEqual(parseAddressList(v), want, v);
  assert.equal(formatAddress({ name: 'A', address: 'a@b.c' }), 'A <a@b.c>');
  assert.equal(formatAddress({ name: '', address: 'a@b.c' }), 'a@b.c');
  assert.equal(formatAddressHeader([{ name: 'Smith, J.', address: 'j@s.x' }, { name: 'J\u00f6rg', address: 'j@r.x' }]), '"Smith, J." <j@s.x>, =?utf-8?b?SsO2cmc=?= <j@r.x>');
});

test('parameters', () => {
  assert.deepEqual(parseParams('Text/Plain; charset="UTF-8"; format=flowed (comment)'), ['text/plain', { charset: 'UTF-8', format: 'flowed' }]);
  assert.deepEqual(parseParams("attachment; filename*0*=utf-8''a%C3%A4; filename*1=b.txt"), ['attachment', { filename: 'a\u00e4b.txt' }]);
  assert.deepEqual(parseParams('attachment; filename="a \\"q\\".txt"'), ['attachment', { filename: 'a "q".txt' }]);
  assert.equal(formatParam('filename', 'a b.txt'), 'filename="a b.txt"');
  assert.equal(formatParam('filename', 'r\u00e9sum\u00e9.pdf'), "filename*=utf-8''r%C3%A9sum%C3%A9.pdf");
});

test('quoted-printable', () => {
  const text = 'Line one with trailing space \nSecond: caf\u00e9 = 1\n' + 'x'.repeat(100) + '\n\tindented\t';
  const qp = quotedPrintable(text);
  for (const line of qp.split('\r\n')) assert.ok(line.length <= 76, line);
  assert.ok(!/[ \t]\r\n/.test(qp + '\r\n'), 'no trailing white space');
  assert.equal(fromUtf8(quotedPrintableDecode(qp)), text.replace(/\n/g, '\r\n'));
});

test('base64 and binary strings', () => {
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255);
  assert.deepEqual(binaryBytes(binaryString(bytes)), bytes);
  assert.deepEqual(base64Lenient('AAEC\r\nAw==junk'), Uint8Array.of(0, 1, 2, 3));
});

test('encoded words round trip and stay short', () => {
  const s = '\u00dcber '.repeat(30) + '\u2603';
  const enc = encodeWords(s);
  for (const w of enc.split('\r\n ')) assert.ok(w.length <= 75, w);
  assert.equal(decodeWords(enc.replace(/\r\n/g, '')), s);
  assert.equal(encodeWords('plain'), 'plain');
});

test('written messages read back', () => {
  const fields = [['From', 'alice@example.test'], ['To', 'bob@example.test'], ['Date', formatDate(new Date(Date.UTC(2025, 2, 1, 9, 29, 40)))], ['Message-ID', '<x@example.test>']];
  assert.equal(fields[2][1], 'Sat, 01 Mar 2025 09:29:40 +0000');
  const atts = [{ filename: 'n\u00f6tes.txt', data: utf8('hello\n') }, { filename: 'dir/pic.png', data: Uint8Array.of(137, 80, 78, 71, 0, 255) }];
  const text = 'Hi Bob,\n\nsee attached. = sign, tr\u00e4iling \n' + 'long '.repeat(40);
  const raw = buildMessage(fields, 'R\u00e9sum\u00e9 and more', text, atts, true);
  for (const line of fromUtf8(raw).split('\r\n')) assert.ok(line.length <= 998);
  assert.ok(!/[^\r]\n/.test(fromUtf8(raw)), 'CRLF only');
  const ent = parseEntity(raw);
  assert.equal(ent.type, 'multipart/mixed');
  assert.equal(ent.params['protected-headers'], 'v1');
  const p = walkParts(ent);
  assert.equal(p.text, text.replace(/\n/g, '\r\n'));
  assert.deepEqual(p.attachments.map((a) => [a.filename, a.contentType, [...a.data]]), [['n\u00f6tes.txt', 'text/plain', [...utf8('hello\n')]], ['pic.png', 'image/png', [137, 80, 78, 71, 0, 255]]]);
  assert.equal(decodeWords(ent.header.get('Subject')), 'R\u00e9sum\u00e9 and more');
  const single = parseEntity(buildMessage(fields, 's', 'only text', [], false));
  assert.equal(single.type, 'text/plain');
  assert.equal(single.params['protected-headers'], undefined);
  assert.equal(entityText(single), 'only text');
});

test('the PGP/MIME wrapper', () => {
  const raw = pgpMIME([['From', 'a@b.c']], '-----BEGIN PGP MESSAGE-----\n\nabc\n-----END PGP MESSAGE-----\n');
  const ent = parseEntity(raw);
  assert.equal(ent.type, 'multipart/encrypted');
  assert.equal(ent.params.protocol, 'application/pgp-encrypted');
  assert.equal(ent.header.get('Subject'), '...');
  assert.equal(ent.parts.length, 2);
  assert.equal(fromUtf8(ent.parts[0].body), 'Version: 1');
  assert.equal(fromUtf8(ent.parts[1].body), '-----BEGIN PGP MESSAGE-----\r\n\r\nabc\r\n-----END PGP MESSAGE-----');
});

test('multipart edge cases', () => {
  const body = crlf('--x\nA: 1\n\none\n--xy\n--x\n\ntwo\n--x--\n');
  assert.deepEqual(splitMultipart(body, 'x').map((b) => fromUtf8(b)), ['A: 1\r\n\r\none\r\n--xy', '\r\ntwo']);
  assert.deepEqual(splitMultipart(crlf('--x\n\nunterminated'), 'x').map((b) => fromUtf8(b)), ['\r\nunterminated']);
});

test('snippets and HTML text', () => {
  assert.equal(snippet('  a\r\n\tb  c '), 'a b c');
  assert.equal(snippet('x'.repeat(300)).length, 200);
  assert.equal(htmlToText('<html><head><style>p{}</style></head><body><p>Hi &amp; <b>bye</b></p><script>x()</script></body></html>'), 'Hi & bye');
});

test('arbitrary bytes never break the reader', () => {
  let seed = 7;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = ['Content-Type: multipart/mixed; boundary=b\r\n', '--b\r\n', '--b--\r\n', '\r\n', 'Content-Transfer-Encoding: base64\r\n',
    'Content-Transfer-Encoding: quoted-printable\r\n', '=?utf-8?b?w6k=?=', '=ZZ', 'Subject: x\r\n', 'charset=unknown-8', '\u00ff\u0000', 'filename*0*=x%', ':'];
  for (let i = 0; i < 500; i++) {
    let s = '';
    for (let k = rnd(20); k > 0; k--) s += pieces[rnd(pieces.length)];
    const bytes = Uint8Array.from(s, (c) => c.charCodeAt(0) & 255);
    const ent = parseEntity(bytes);
    walkParts(ent);
    parseAddressList(ent.header.get('From') + s.slice(0, 40));
  }
});
