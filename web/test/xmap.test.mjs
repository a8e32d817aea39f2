// The XMAP codec against every example of docs/XMAP.md (xmap/testdata/examples): each
// request and response decodes, and re-encodes to the very same bytes (the canonical form);
// the examples the server refuses are refused here with the same code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, repoFile } from './helpers.mjs';
import {
  decodeRequest, decodeResponse, encodeRequestText, encodeResponseText, XMAPError, canonicalTime,
  validAddress, validFolderName, parseFlag, REQUESTS, RESULTS,
} from '../src/lib/xmap.js';
import { parseXML, XMLError } from '../src/lib/xml.js';
import { utf8 } from '../src/lib/bytes.js';

const dir = path.join(ROOT, 'xmap', 'testdata', 'examples');
const files = readdirSync(dir).filter((f) => f.endsWith('.xml')).sort();

test('there are examples', () => {
  assert.ok(files.length >= 50, `${files.length} examples`);
});

const refused = new Set();
for (const f of files.filter((x) => x.endsWith('.response.xml'))) {
  const doc = decodeResponse(repoFile('xmap', 'testdata', 'examples', f));
  if (doc.error) refused.add(f.replace('.response.xml', '.request.xml'));
}

for (const f of files) {
  test(`round trip ${f}`, () => {
    const bytes = repoFile('xmap', 'testdata', 'examples', f);
    const text = bytes.toString('utf8');
    if (f.endsWith('.request.xml')) {
      if (refused.has(f)) {
        const resp = decodeResponse(repoFile('xmap', 'testdata', 'examples', f.replace('.request.xml', '.response.xml')));
        assert.throws(() => decodeRequest(bytes), (e) => e instanceof XMAPError && e.documentLevel && e.code === resp.error.code);
        return;
      }
      const reqs = decodeRequest(bytes);
      assert.equal(encodeRequestText(reqs), text);
    } else {
      const doc = decodeResponse(bytes);
      assert.equal(encodeResponseText(doc), text);
    }
  });
}

test('every request and result kind is covered by an example', () => {
  const names = new Set();
  for (const f of files) {
    for (const m of repoFile('xmap', 'testdata', 'examples', f).toString('utf8').matchAll(/^ {2}<([a-z-]+)[ >/]/gm)) names.add(m[1]);
  }
  for (const n of Object.keys(REQUESTS)) assert.ok(names.has(n), n);
  assert.deepEqual(Object.keys(REQUESTS).sort(), Object.keys(RESULTS).sort());
});

test('decoded values', () => {
  const [r] = decodeResponse(repoFile('xmap', 'testdata', 'examples', '06-list-messages.response.xml')).responses;
  assert.equal(r.result.folderId, '1');
  assert.equal(r.result.total, 3);
  assert.equal(r.result.nextCursor, 'd.1.1740816900.12');
  assert.equal(r.result.messages.length, 2);
  assert.equal(r.result.messages[0].received, '2025-03-01T09:00:00Z');
  assert.deepEqual(r.result.messages[0].flags, [], 'no flags attribute reads as no flags');
  assert.ok(r.result.messages[0].summary instanceof Uint8Array);
  assert.equal(r.result.messages[0].summaryBy, 'server');
  const [ap] = decodeResponse(repoFile('xmap', 'testdata', 'examples', '14-append.response.xml')).responses;
  assert.equal(ap.result.message.summaryBy, 'owner');
  const [k] = decodeResponse(repoFile('xmap', 'testdata', 'examples', '02-anon-salt-lookup.response.xml')).responses;
  assert.deepEqual({ ...k.result.kdf, salt: k.result.kdf.salt.length }, { alg: 'argon2id', salt: 16, time: 3, memory: 65536, threads: 4 });
  const [pk] = decodeResponse(repoFile('xmap', 'testdata', 'examples', '15-public-keys.response.xml')).responses;
  assert.equal(pk.result.keys[0].address, 'bob@example.org');
  assert.ok(pk.result.keys[0].key instanceof Uint8Array && pk.result.keys[0].key.length > 16);
  assert.deepEqual(pk.result.notFound, ['carol@remote.example']);
  const [lc] = decodeResponse(repoFile('xmap', 'testdata', 'examples', '18-list-contacts.response.xml')).responses;
  assert.ok(lc.result.contacts[0].data instanceof Uint8Array);
  const b = decodeResponse(repoFile('xmap', 'testdata', 'examples', '22-batch.response.xml')).responses;
  assert.deepEqual(b[1].error, { code: 'not-found', message: 'no message 11' });
});

const head = '<?xml version="1.0" encoding="UTF-8"?>\n';
const wrap = (body, attrs = 'xmlns="urn:cryptomail:xmap:1" version="1"') => `${head}<xmap ${attrs}>${body}</xmap>`;

test('any well-formed equivalent is read', () => {
  const docs = [
    '<x:xmap xmlns:x="urn:cryptomail:xmap:1" version="1"><x:list-folders id="a"/></x:xmap>',
    `<xmap xmlns='urn:cryptomail:xmap:1' version='1'><!-- c --><list-folders id="a"></list-folders></xmap>`,
    '<xmap xmlns="urn:cryptomail:xmap:1" version="1">\r\n<wait id="a" since="&#x31;" timeout="0"/></xmap>',
    '<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id><![CDATA[12]]></id></fetch></xmap>',
  ];
  for (const d of docs) assert.equal(decodeRequest(d).length, 1, d);
  const [f] = decodeRequest(docs[3]);
  assert.deepEqual(f.ids, ['12']);
  const [m] = decodeResponse(wrap('<fetch id="a"><message id="1" folder-id="1" size="1" received="2025-03-01T10:30:00.500+01:00"><body>\n  QUJD\n  RA==\n</body></message></fetch>')).responses;
  assert.equal(m.result.messages[0].received, '2025-03-01T09:30:00.5Z');
  assert.deepEqual([...m.result.messages[0].body], [...utf8('ABCD')]);
});

test('refused documents', () => {
  const cases = [
    ['<!DOCTYPE xmap><xmap xmlns="urn:cryptomail:xmap:1" version="1"/>', 'bad-request'],
    ['<?xml version="1.0"?><?pi x?><xmap xmlns="urn:cryptomail:xmap:1" version="1"/>', 'bad-request'],
    ['\uFEFF<xmap xmlns="urn:cryptomail:xmap:1" version="1"/>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:2" version="2"/>', 'unsupported-version'],
    ['<xmap xmlns="urn:other" version="1"/>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a"/>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a"/></xmap><xmap/>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a" id="b"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a" x="1"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a">text</list-folders></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="&x;"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><nope id="a"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id>1</id><id>1</id></fetch></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><wait id="a" since="1" timeout="121"/></xmap>', 'limit-exceeded'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-messages id="a" folder="INBOX" folder-id="1"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><update-flags id="a" action="add" flags="\\Deleted"><id>1</id></update-flags></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><a><b><c><d><e><f><g><h/></g></f></e></d></c></b></a></xmap>', 'limit-exceeded'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a"/></xmap>\u0001', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1" xmlns:p="urn:x"><p:list-folders id="a"/></xmap>', 'bad-request'],
    ['<xmap xmlns="urn:cryptomail:xmap:1" version="1"><q:list-folders id="a"/></xmap>', 'bad-request'],
  ];
  for (const [d, code] of cases) {
    assert.throws(() => decodeRequest(d), (e) => e instanceof XMAPError && e.code === code, d);
  }
  const tooMany = wrap('<list-folders id="a"/>'.repeat(1).replace('a', 'a') + Array.from({ length: 50 }, (_, i) => `<list-folders id="b${i}"/>`).join(''));
  assert.throws(() => decodeRequest(tooMany), (e) => e.code === 'limit-exceeded');
});

test('refused responses', () => {
  const cases = [
    wrap('<error code="bad-request">x</error><error code="x"/>'),
    wrap('<list-folders id="a"><error code="BAD">x</error></list-folders>'),
    wrap('<list-folders id="a"><folder id="1" name="INBOX" role="nope" total="1" unseen="0"/></list-folders>'),
    wrap('<list-folders id="a"><folder id="1" name="INBOX" total="-1" unseen="0"/></list-folders>'),
    wrap('<fetch id="a"><message id="1" folder-id="1" size="1" received="yesterday"/></fetch>'),
    wrap('<fetch id="a"><message id="1" folder-id="1" size="1" received="2025-03-01T09:00:00Z"><body>QUJD=</body></message></fetch>'),
    wrap('<fetch id="a"><message id="1" folder-id="1" size="1" received="2025-03-01T09:00:00Z"><body>QR==</body></message></fetch>'),
    wrap('<fetch id="a"><message id="1" folder-id="1" size="1" received="2025-03-01T09:00:00Z"><body></body></message></fetch>'),
    wrap('<salt-lookup id="a"/>'),
    wrap('<salt-lookup id="a"><kdf alg="argon2id" salt="AAAAAAAAAAAAAAAAAAAAAA==" time="1" memory="65536" threads="4"/></salt-lookup>'),
    wrap('<put-contact id="a"><contact id="1">QUJD</contact></put-contact>'),
    wrap('<wait id="a" state="1" changed="yes"/>'),
  ];
  for (const d of cases) assert.throws(() => decodeResponse(d), XMAPError, d);
});

test('values', () => {
  assert.equal(canonicalTime('2025-03-01T09:30:00Z'), '2025-03-01T09:30:00Z');
  assert.equal(canonicalTime('2025-03-01T09:30:00.120000Z'), '2025-03-01T09:30:00.12Z');
  assert.equal(canonicalTime('2025-03-01T00:30:00-02:30'), '2025-03-01T03:00:00Z');
  assert.equal(canonicalTime('2025-02-30T00:00:00Z'), null);
  assert.equal(canonicalTime('2025-03-01 09:30:00Z'), null);
  for (const a of ['alice@example.org', 'a.b+c@x.example', 'jörg@bücher.example', "o'neil@x.y"]) assert.ok(validAddress(a), a);
  for (const a of ['', 'alice', '@x', 'a@', 'a@@b', 'a..b@x', '.a@x', 'a b@x', 'a@-x.y', 'a@x..y', '"a"@x', `${'a'.repeat(65)}@x`]) assert.ok(!validAddress(a), a);
  assert.ok(validFolderName('Projects 2025'));
  for (const n of ['', ' x', 'x ', 'a\u0007b', 'x'.repeat(256)]) assert.ok(!validFolderName(n), JSON.stringify(n));
  assert.equal(parseFlag('$Important'), '$important');
  assert.equal(parseFlag('\\Seen'), '\\Seen');
  assert.equal(parseFlag('\\Unknown'), null);
  assert.equal(parseFlag('a b'), null);
});

test('escaping survives a round trip', () => {
  const name = 'R&D <"quoted">';
  const text = encodeRequestText([{ op: 'create-folder', id: 'c1', name }]);
  assert.ok(text.includes('<create-folder id="c1" name="R&amp;D &lt;&quot;quoted&quot;&gt;"/>'), text);
  assert.equal(decodeRequest(text)[0].name, name);
  const doc = encodeResponseText({ responses: [{ op: 'create-folder', id: 'c1', result: { folder: { id: '9', name, total: 0, unseen: 0 } } }] });
  assert.equal(decodeResponse(doc).responses[0].result.folder.name, name);
  const err = encodeResponseText({ error: { code: 'bad-request', message: 'a "b" <c> & d\tx\ny' } });
  assert.ok(err.includes('>a "b" &lt;c&gt; &amp; d&#x9;x&#xA;y</error>'), err);
  assert.equal(decodeResponse(err).error.message, 'a "b" <c> & d\tx\ny');
});

test('the XML reader', () => {
  const r = parseXML('<?xml version="1.0"?>\n<a xmlns="u" xmlns:p="v" p:x="1&amp;2" y=\'&#65;&#x42;\'>t<b/>u<!--c--><![CDATA[<v>]]></a>');
  assert.equal(r.name, 'a');
  assert.equal(r.ns, 'u');
  assert.deepEqual(r.attrs, [{ name: 'x', ns: 'v', value: '1&2' }, { name: 'y', ns: '', value: 'AB' }]);
  assert.equal(r.text, 'tu<v>');
  assert.equal(r.kids[0].ns, 'u');
  assert.equal(parseXML('<a x="1\n2"/>').attrs[0].value, '1 2');
  for (const bad of ['', '<a>', '<a></b>', '<a x=1/>', '<a>&#0;</a>', '<a>]]></a>', '<!-- a -- b --><a/>', 'x<a/>', '<a/>x', '<a><![CDATA[x</a>', '<?xml version="1.1"?><a/>', '<?xml version="1.0" encoding="latin1"?><a/>', '<a b="<"/>', '<a:b/>']) {
    assert.throws(() => parseXML(bad), XMLError, bad);
  }
});

// A seeded mutation fuzz over the examples: whatever the bytes, the decoders either return a
// value or throw an XMAPError (never anything else), and what they accept re-encodes to a
// document that decodes to the same value.
test('mutated documents never break the decoders', () => {
  let seed = 0x2545f491;
  const rnd = (n) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const alphabet = '<>/="\'& \n\t:;x-!?[]#0aZ\u00e9\uFFFD';
  let accepted = 0;
  for (const f of files) {
    const text = repoFile('xmap', 'testdata', 'examples', f).toString('utf8');
    const isRequest = f.endsWith('.request.xml');
    for (let i = 0; i < 150; i++) {
      const chars = [...text];
      for (let k = 1 + rnd(3); k > 0; k--) {
        const at = rnd(chars.length);
        switch (rnd(3)) {
          case 0: chars.splice(at, 1); break;
          case 1: chars.splice(at, 0, alphabet[rnd(alphabet.length)]); break;
          default: chars[at] = alphabet[rnd(alphabet.length)];
        }
      }
      const doc = chars.join('');
      let v;
      try {
        v = isRequest ? decodeRequest(doc) : decodeResponse(doc);
      } catch (e) {
        assert.ok(e instanceof XMAPError, `${f} #${i}: ${e && e.stack}`);
        continue;
      }
      accepted++;
      const again = isRequest ? encodeRequestText(v) : encodeResponseText(v);
      assert.deepEqual(isRequest ? decodeRequest(again) : decodeResponse(again), v, `${f} #${i}`);
    }
  }
  assert.ok(accepted > 0);
});

test('summary-by: a value this reader does not know reads as sender, a missing one as nothing', () => {
  const msg = (attr) => wrap(`<fetch id="f"><message id="1" folder-id="1" size="1" received="2025-03-01T09:00:00Z"${attr}/></fetch>`);
  const by = (attr) => decodeResponse(new TextEncoder().encode(msg(attr))).responses[0].result.messages[0].summaryBy;
  assert.equal(by(' summary-by="sender"'), 'sender');
  assert.equal(by(' summary-by="trusted-by-me"'), 'sender');
  assert.equal(by(''), undefined);
});
