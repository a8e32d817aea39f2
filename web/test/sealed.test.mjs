// The sealed-key format against client/testdata/sealed-key.json (docs/CLIENT.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repoJSON } from './helpers.mjs';
import { fromHex, toHex } from '../src/lib/bytes.js';
import { deriveKeys } from '../src/lib/sexmap.js';
import { sealPrivateKey, openSealedKey, sealAD, UnsealError } from '../src/lib/sealed.js';

const V = repoJSON('client', 'testdata', 'sealed-key.json');

test('seal key from the passphrase', () => {
  const k = deriveKeys(V.passphrase, fromHex(V.salt), { t: V.params.t, m: V.params.m_kib, p: V.params.p });
  assert.equal(toHex(k.sealKey), V.seal_key);
});

test('associated data', () => {
  assert.equal(toHex(sealAD(V.address)), V.ad);
});

test('seal reproduces the vector', () => {
  const sealed = sealPrivateKey(fromHex(V.seal_key), V.address, fromHex(V.plaintext), fromHex(V.nonce));
  assert.equal(toHex(sealed), V.sealed);
});

test('open the vector, under either case of the address', () => {
  for (const a of [V.address, V.address.toLowerCase(), V.address.toUpperCase().replace('ORG', 'org')]) {
    assert.equal(toHex(openSealedKey(fromHex(V.seal_key), a, fromHex(V.sealed))), V.plaintext);
  }
});

test('a fresh seal opens and uses a fresh nonce', () => {
  const key = fromHex(V.seal_key);
  const a = sealPrivateKey(key, V.address, fromHex(V.plaintext));
  const b = sealPrivateKey(key, V.address, fromHex(V.plaintext));
  assert.notEqual(toHex(a), toHex(b));
  assert.equal(toHex(openSealedKey(key, V.address, a)), V.plaintext);
});

test('every mismatch is one error', () => {
  const key = fromHex(V.seal_key);
  const sealed = fromHex(V.sealed);
  const cases = {
    'other address': () => openSealedKey(key, 'bob@example.org', sealed),
    'other key': () => openSealedKey(fromHex(V.seal_key.replace(/^b0/, 'b1')), V.address, sealed),
    'version 2': () => { const s = sealed.slice(); s[0] = 2; return openSealedKey(key, V.address, s); },
    'flipped tag': () => { const s = sealed.slice(); s[s.length - 1] ^= 1; return openSealedKey(key, V.address, s); },
    'flipped nonce': () => { const s = sealed.slice(); s[3] ^= 1; return openSealedKey(key, V.address, s); },
    short: () => openSealedKey(key, V.address, sealed.subarray(0, 40)),
    empty: () => openSealedKey(key, V.address, new Uint8Array(0)),
  };
  for (const [name, f] of Object.entries(cases)) assert.throws(f, UnsealError, name);
});
