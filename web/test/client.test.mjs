// The client's mail path without a server: what sendMail hands to `send` is read back by the
// recipient (storage layer, PGP/MIME, protected headers, signature, attachments), and the
// summaries say what the message says.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Session, MissingKeysError } from '../src/lib/client.js';
import { generateKey, encryptBinary, signAndEncrypt, readPublicKey, publicKeyBytes, secretKeyBytes, canEncryptTo, fingerprint } from '../src/lib/pgp.js';
import { sealPrivateKey, UnsealError } from '../src/lib/sealed.js';
import { fromUtf8, utf8 } from '../src/lib/bytes.js';
import { buildMessage } from '../src/lib/mime.js';

const now = () => new Date(Date.UTC(2025, 2, 1, 9, 29, 40));
let alice;
let bob;
let mallory;

// fakeSession is a Session whose requests go to handler(op, fields) instead of a server.
function fakeSession(address, key, known, handler) {
  const s = new Session({ now }, address, null, new Uint8Array(32));
  s.key = key;
  for (const [a, k] of Object.entries(known)) s.keys.set(a, k);
  s.one = async (op, fields) => handler(op, fields);
  return s;
}

before(async () => {
  alice = await generateKey({ name: 'Alice', email: 'alice@example.test', date: new Date(Date.UTC(2025, 0, 1)) });
  bob = await generateKey({ email: 'bob@example.test', date: new Date(Date.UTC(2025, 0, 1)) });
  mallory = await generateKey({ email: 'mallory@example.test', date: new Date(Date.UTC(2025, 0, 1)) });
});

async function send(draft, known) {
  let req;
  const s = fakeSession('alice@example.test', alice, known, async (op, fields) => {
    assert.equal(op, 'send');
    req = fields;
    return { sent: { id: '1' }, recipients: [] };
  });
  const report = await s.sendMail({ date: now(), ...draft });
  return { req, report };
}

test('a sent message reads back at the recipient, verified, with its attachment', async () => {
  const att = Uint8Array.from({ length: 5000 }, (_, i) => i & 255);
  const { req, report } = await send({
    to: ['Bob <bob@example.test>'], fromName: 'Alice', subject: 'Quarterly r\u00e9sum\u00e9', text: 'Hello Bob,\nnumbers attached.\n',
    attachments: [{ filename: 'data.bin', data: att }],
  }, { 'bob@example.test': bob.toPublic() });
  assert.equal(req.recipients.length, 1);
  assert.deepEqual({ ...req.recipients[0], summary: undefined }, { address: 'bob@example.test', encrypted: true, allowPlaintext: false, summary: undefined });
  assert.equal(req.plaintextBody, undefined);
  const outer = fromUtf8(req.body);
  assert.match(outer, /^Subject: \.\.\.\r$/m, 'the real subject is not in the outer header');
  assert.doesNotMatch(outer, /Quarterly|numbers attached/);
  assert.match(outer, /Content-Type: multipart\/encrypted/);
  assert.match(report.messageId, /^[0-9a-f]{32}@example\.test$/);

  // The server stores it for Bob encrypted to his key (the storage layer).
  const stored = await encryptBinary(req.body, [bob.toPublic()]);
  const b = fakeSession('bob@example.test', bob, { 'alice@example.test': alice.toPublic() }, async () => assert.fail('no lookup expected'));
  const m = await b.openMessage({ id: '7', folderId: '1', flags: [], size: stored.length, received: '2025-03-01T09:30:00Z', body: stored });
  assert.equal(m.storageEncrypted, true);
  assert.equal(m.encrypted, true);
  assert.equal(m.signature.status, 'verified');
  assert.equal(m.subject, 'Quarterly r\u00e9sum\u00e9');
  assert.equal(m.text, 'Hello Bob,\r\nnumbers attached.\r\n');
  assert.equal(m.from, 'Alice <alice@example.test>');
  assert.deepEqual(m.to, [{ name: 'Bob', address: 'bob@example.test' }]);
  assert.equal(m.messageId, report.messageId);
  assert.equal(m.attachments.length, 1);
  assert.equal(m.attachments[0].filename, 'data.bin');
  assert.deepEqual([...m.attachments[0].data], [...att]);

  // Summaries for Bob and for Sent say what the message says.
  const sm = await b.decryptSummary(req.recipients[0].summary);
  assert.deepEqual({ ...sm, date: sm.date.toISOString() }, {
    from: 'Alice <alice@example.test>', to: ['Bob <bob@example.test>'], cc: [], subject: 'Quarterly r\u00e9sum\u00e9',
    date: '2025-03-01T09:29:40.000Z', messageId: report.messageId, snippet: 'Hello Bob, numbers attached.', hasAttachments: true,
  });
  const a = fakeSession('alice@example.test', alice, {}, async () => assert.fail());
  assert.equal((await a.decryptSummary(req.sentSummary)).subject, 'Quarterly r\u00e9sum\u00e9');
  await assert.rejects(b.decryptSummary(req.sentSummary), 'the Sent summary is for Alice only');
  // Alice can read her own copy (encrypted to her too).
  const own = await a.openMessage({ id: '1', body: await encryptBinary(req.body, [alice.toPublic()]) });
  assert.equal(own.signature.status, 'verified');
});

test('a recipient without a key needs explicit consent', async () => {
  await assert.rejects(send({ to: ['carol@remote.example'], subject: 's', text: 't' }, {
    'carol@remote.example': null,
  }), (e) => e instanceof MissingKeysError && e.addresses[0] === 'carol@remote.example');
  const { req } = await send({ to: ['carol@remote.example', 'bob@example.test'], subject: 's', text: 't', allowPlaintext: ['Carol@Remote.example'] }, {
    'carol@remote.example': null, 'bob@example.test': bob.toPublic(),
  });
  assert.deepEqual(req.recipients.map((r) => [r.address, r.encrypted, r.allowPlaintext, Boolean(r.summary)]),
    [['carol@remote.example', false, true, false], ['bob@example.test', true, false, true]]);
  const plain = fromUtf8(req.plaintextBody);
  assert.match(plain, /^Subject: s\r$/m);
  assert.doesNotMatch(plain, /protected-headers/);
});

test('an unsealed key signs: unsealing leaves the key intact', async () => {
  const sealKey = crypto.getRandomValues(new Uint8Array(32));
  const account = { address: 'alice@example.test', publicKey: publicKeyBytes(alice), sealedKey: sealPrivateKey(sealKey, 'Alice@example.test', secretKeyBytes(alice)) };
  const s = new Session({ now }, 'alice@example.test', null, new Uint8Array(32));
  await s.unseal(sealKey, account, 'alice@example.test');
  assert.equal(s.fingerprint, fingerprint(alice));
  assert.equal(s.displayName, 'Alice', "the name of the key's user ID");
  const armored = await signAndEncrypt(utf8('x'), s.privateKey(), [s.privateKey().toPublic()]);
  assert.match(armored, /BEGIN PGP MESSAGE/);
  const other = { ...account, publicKey: publicKeyBytes(bob) };
  await assert.rejects(new Session({ now }, 'alice@example.test', null, new Uint8Array(32)).unseal(sealKey, other, 'alice@example.test'), /not the private half/);
  await assert.rejects(new Session({ now }, 'bob@example.test', null, new Uint8Array(32)).unseal(sealKey, { ...account, address: 'bob@example.test' }, 'bob@example.test'), UnsealError);
});

test('keys read from their binary form can be encrypted to', async () => {
  const k = await readPublicKey(publicKeyBytes(bob));
  assert.equal(await canEncryptTo(k), true);
  assert.equal(await canEncryptTo(k, new Date(Date.UTC(2024, 0, 1))), false, 'not before the key existed');
});

test('recipients are checked and deduplicated', async () => {
  await assert.rejects(send({ to: ['not an address'], text: 'x' }, {}), /not an address/);
  await assert.rejects(send({ to: [], text: 'x' }, {}), /no recipients/);
  const { req } = await send({ to: ['bob@example.test, BOB@example.test'], cc: ['bob@example.test'], text: 'x' }, { 'bob@example.test': bob.toPublic() });
  assert.equal(req.recipients.length, 1);
});

test('signature statuses', async () => {
  const inner = buildMessage([['From', 'alice@example.test'], ['To', 'bob@example.test']], 'sig', 'signed text', [], true);
  const wrap = async (signer) => {
    const armored = await signAndEncrypt(inner, signer, [bob.toPublic()]);
    const raw = utf8(`From: alice@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n${armored.replace(/\n/g, '\r\n')}\r\n--b--\r\n`);
    return { id: '1', body: await encryptBinary(raw, [bob.toPublic()]) };
  };
  const knows = fakeSession('bob@example.test', bob, { 'alice@example.test': alice.toPublic() }, async () => assert.fail());
  const lookupFails = fakeSession('bob@example.test', bob, {}, async () => { throw new Error('offline'); });
  assert.equal((await knows.openMessage(await wrap(alice))).signature.status, 'verified');
  assert.equal((await knows.openMessage(await wrap(mallory))).signature.status, 'unknown-key');
  assert.equal((await lookupFails.openMessage(await wrap(alice))).signature.status, 'unknown-key');
  const m = await knows.openMessage(await wrap(alice));
  assert.equal(m.subject, 'sig');
  assert.equal(m.text, 'signed text');
  assert.equal(m.signature.signerAddress, 'alice@example.test');
  assert.equal(m.signature.signer, fingerprint(alice));
});

// Issue 9, item 1: Mallory writes her own address outside, Alice's inside, and signs with
// her own key. The client shows Alice, so it must not say verified, and must name Mallory.
test('a forged inner From is not verified and names who signed', async () => {
  const forge = async (outerFrom, innerFrom, signer) => {
    const inner = buildMessage([['From', innerFrom], ['To', 'bob@example.test']], 'Wire the money', 'pay today', [], true);
    const armored = await signAndEncrypt(inner, signer, [bob.toPublic()]);
    const raw = utf8(`From: ${outerFrom}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n${armored.replace(/\n/g, '\r\n')}\r\n--b--\r\n`);
    return { id: '9', body: await encryptBinary(raw, [bob.toPublic()]) };
  };
  const server = { 'alice@example.test': alice.toPublic(), 'mallory@example.test': mallory.toPublic() };
  const lookups = [];
  const b = fakeSession('bob@example.test', bob, {}, async (op, fields) => {
    assert.equal(op, 'public-keys');
    lookups.push(...fields.addresses);
    return { keys: fields.addresses.filter((a) => server[a]).map((a) => ({ address: a, key: publicKeyBytes(server[a]) })), notFound: [] };
  });
  const m = await b.openMessage(await forge('mallory@example.test', 'Alice <alice@example.test>', mallory));
  assert.equal(m.from, 'Alice <alice@example.test>');
  assert.equal(m.signature.status, 'other-signer');
  assert.equal(m.signature.signerAddress, 'mallory@example.test');
  assert.equal(m.signature.signer, fingerprint(mallory));
  assert.equal(m.signature.reason, 'signed by mallory@example.test, not by the sender shown');
  assert.deepEqual(lookups.sort(), ['alice@example.test', 'mallory@example.test'], "the shown From's key is looked up");

  // Both Froms Alice's: Mallory's key is known to this session by now, so she is named.
  const both = await b.openMessage(await forge('alice@example.test', 'alice@example.test', mallory));
  assert.equal(both.signature.status, 'other-signer');
  assert.equal(both.signature.signerAddress, 'mallory@example.test');

  // Alice's own signature, handed on with another outer From: verified, with the caveat.
  const fwd = await b.openMessage(await forge('mallory@example.test', 'alice@example.test', alice));
  assert.equal(fwd.signature.status, 'verified');
  assert.equal(fwd.signature.signerAddress, 'alice@example.test');
  assert.equal(fwd.signature.reason, 'the outer From: is mallory@example.test');

  // The shown From's key found only after decrypting: the signature is still checked.
  const fresh = fakeSession('bob@example.test', bob, {}, async (op, fields) => ({
    keys: fields.addresses.filter((a) => server[a]).map((a) => ({ address: a, key: publicKeyBytes(server[a]) })), notFound: [] }));
  const late = await fresh.openMessage(await forge('someone@remote.example', 'alice@example.test', alice));
  assert.equal(late.signature.status, 'verified');

  // A From that shows two senders (or a name beside an address) shows none a signature
  // could vouch for, whichever of them signed.
  for (const from of ['alice@example.test, mallory@example.test', 'alice@example.test\u200b \u200b, mallory@example.test']) {
    const two = await b.openMessage(await forge('alice@example.test', from, mallory));
    assert.equal(two.signature.status, 'other-signer', from);
    assert.match(two.signature.reason, /no single sender/);
  }
  const twoAlice = await b.openMessage(await forge('alice@example.test', 'alice@example.test, mallory@example.test', alice));
  assert.equal(twoAlice.signature.status, 'other-signer');
});

test('a readable stored body and an inline-PGP message', async () => {
  const b = fakeSession('bob@example.test', bob, { 'alice@example.test': alice.toPublic() }, async () => assert.fail());
  const plain = await b.openMessage({ id: '2', body: utf8('From: x@y.z\r\nSubject: hi\r\n\r\nreadable\r\n') });
  assert.equal(plain.storageEncrypted, false);
  assert.equal(plain.text, 'readable\r\n');
  const armored = await signAndEncrypt(utf8('inline secret'), alice, [bob.toPublic()]);
  const inline = await b.openMessage({ id: '3', body: await encryptBinary(utf8(`From: alice@example.test\r\nSubject: old style\r\n\r\n${armored}`), [bob.toPublic()]) });
  assert.equal(inline.encrypted, true);
  assert.equal(inline.text, 'inline secret');
  assert.equal(inline.signature.status, 'verified');

  // Alice's signed inline text re-wrapped with an HTML part and an attachment beside it:
  // the HTML would be shown instead of the signed text, and the badge must not cover the
  // attachment.
  const wrapped = utf8(`From: alice@example.test\r\nSubject: lunch\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n` +
    `--b1\r\nContent-Type: text/plain\r\n\r\n${armored.replace(/\n/g, '\r\n')}\r\n` +
    `--b1\r\nContent-Type: text/html\r\n\r\n<p>Pay IBAN XX00 MALLORY today</p>\r\n` +
    `--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=invoice.pdf\r\n\r\n%PDF-1.4\r\n--b1--\r\n`);
  const mixed = await b.openMessage({ id: '4', body: await encryptBinary(wrapped, [bob.toPublic()]) });
  assert.equal(mixed.text, 'inline secret');
  assert.equal(mixed.html, '');
  assert.equal(mixed.signature.status, 'verified');
  assert.match(mixed.signature.reason, /attachment\(s\) beside it are not/);
});

test('a message for someone else does not open', async () => {
  const b = fakeSession('bob@example.test', bob, {}, async () => assert.fail());
  await assert.rejects(b.openMessage({ id: '4', body: await encryptBinary(utf8('Subject: x\r\n\r\ny'), [alice.toPublic()]) }));
});

// A list line another user wrote (summary-by="sender") is the sender's word: marked
// unverified; the server's and the owner's are not; a server that does not say is not trusted.
test('summaries written by a sender are marked unverified', async () => {
  const b = fakeSession('bob@example.test', bob, {}, async () => assert.fail());
  const summary = await encryptBinary(utf8('{"from":"Alice <alice@example.test>","subject":"hi"}'), [bob.toPublic()]);
  const by = async (summaryBy) => (await b.listed({ id: '1', folderId: '1', flags: [], size: 1, received: '2025-03-01T09:00:00Z', summary, summaryBy })).summaryUnverified;
  assert.equal(await by('sender'), true);
  assert.equal(await by(undefined), true);
  assert.equal(await by('server'), false);
  assert.equal(await by('owner'), false);
});
