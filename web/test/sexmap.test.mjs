// The JavaScript SeXMAP against every byte of xmap/sexmap/testdata/vectors.json
// (SEXMAP.md "How another implementation uses them").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repoJSON } from './helpers.mjs';
import { fromHex, toHex, utf8, fromUtf8, toBase64url, fromBase64url } from '../src/lib/bytes.js';
import {
  CONTENT_TYPE, VERSION, PROLOGUE, FRAME, HEADER_SESSION, HEADER_HANDSHAKE, PATH_HANDSHAKE, PATH_TRANSPORT,
  argon2Raw, keysFromIKM, deriveKeys, validateKDFParams, passphraseBytes, serverSecret, fakeSalt,
  dial, sealFrame, openFrame, requestAD, responseAD, encodePublicKey, decodePublicKey, SexmapError,
  fetchServerKey, PinStore, DeviceStore, MemoryStorage, samePin,
} from '../src/lib/sexmap.js';
import { HandshakeState, keyPair } from '../src/lib/noise.js';

const V = repoJSON('xmap', 'sexmap', 'testdata', 'vectors.json');

test('vector header', () => {
  assert.equal(V.version, VERSION);
  assert.equal(V.content_type, CONTENT_TYPE);
});

for (const kv of V.kdf) {
  test(`kdf: ${kv.comment}`, () => {
    const pw = passphraseBytes(kv.passphrase);
    assert.equal(toHex(pw), kv.passphrase_utf8);
    const params = { t: kv.params.t, m: kv.params.m_kib, p: kv.params.p };
    const ikm = argon2Raw(pw, fromHex(kv.salt), params);
    assert.equal(toHex(ikm), kv.argon2id);
    const k = keysFromIKM(ikm);
    assert.equal(toHex(k.loginPriv), kv.login_private);
    assert.equal(toHex(k.loginPub), kv.login_public);
    assert.equal(toHex(k.sealKey), kv.seal_key);
    if (kv.below_floor) {
      assert.throws(() => deriveKeys(kv.passphrase, fromHex(kv.salt), params), SexmapError);
    } else {
      const d = deriveKeys(kv.passphrase, fromHex(kv.salt), params);
      assert.equal(toHex(d.loginPriv), kv.login_private);
      assert.equal(toHex(d.sealKey), kv.seal_key);
    }
  });
}

test('kdf: a decomposed passphrase is normalized to NFC first', () => {
  const kv = V.kdf[1];
  const decomposed = kv.passphrase.normalize('NFD');
  assert.notEqual(decomposed, kv.passphrase);
  assert.equal(toHex(passphraseBytes(decomposed)), kv.passphrase_utf8);
});

test('kdf: refused parameters', () => {
  for (const r of V.kdf_refused) {
    assert.throws(() => validateKDFParams({ t: r.t, m: r.m_kib, p: r.p }), SexmapError, JSON.stringify(r));
  }
  validateKDFParams({ t: 2, m: 19456, p: 1 });
  validateKDFParams({ t: 16, m: 2097152, p: 16 });
  assert.throws(() => validateKDFParams({ t: 2.5, m: 19456, p: 1 }), SexmapError);
});

test('kdf: bad salt and empty passphrase', () => {
  const params = { t: 2, m: 19456, p: 1 };
  assert.throws(() => deriveKeys('x', new Uint8Array(15), params), /salt/);
  assert.throws(() => deriveKeys('x', new Uint8Array(65), params), /salt/);
  assert.throws(() => deriveKeys('', new Uint8Array(16), params), /empty/);
});

test('fake salts', () => {
  for (const f of V.fake_salt) {
    const sec = serverSecret(fromHex(f.server_static_private));
    assert.equal(toHex(sec), f.server_secret);
    assert.equal(toHex(fakeSalt(sec, f.address)), f.fake_salt);
  }
});

// A fetch that plays the server's side of a recorded session: every request must be the
// recorded one, byte for byte and header for header; the answer is the recorded answer.
function replayFetch(sv, wellKnown) {
  const msgs = sv.messages;
  let i = 0;
  const fetchFn = async (url, init = {}) => {
    const u = new URL(url);
    if (u.pathname === '/.well-known/sexmap') {
      return new Response(wellKnown + '\n', { status: 200, headers: { 'Content-Type': 'text/plain' } });
    }
    const want = msgs[i];
    assert.ok(want, `request ${i} beyond the recording`);
    assert.equal(want.from, 'client');
    assert.equal(init.method, want.method);
    assert.equal(u.pathname, want.path);
    assert.deepEqual(init.headers, want.headers, `headers of request ${i}`);
    assert.equal(toHex(init.body), want.body, `body of request ${i}`);
    const ans = msgs[i + 1];
    assert.equal(ans.from, 'server');
    i += 2;
    return new Response(fromHex(ans.body), { status: ans.status, headers: ans.headers });
  };
  return { fetchFn, done: () => i === msgs.length };
}

// loginPayload is XK message 3's payload: the address, then 0x00 and the device token if the
// vector has one (SEXMAP.md, "Device tokens").
function loginPayload(sv) {
  const a = utf8(sv.address);
  if (!sv.device_token) return a;
  const out = new Uint8Array(a.length + 1 + 32);
  out.set(a);
  out.set(fromHex(sv.device_token), a.length + 1);
  return out;
}

for (const sv of V.sessions) {
  const name = sv.device_token ? `${sv.pattern} with a device token` : sv.pattern;
  test(`session ${name}: client role against the recording`, async () => {
    assert.equal(sv.protocol_name, `Noise_${sv.pattern}_25519_ChaChaPoly_SHA256`);
    assert.equal(sv.prologue, toHex(PROLOGUE));
    const spub = fromHex(sv.server_static_public);
    assert.equal(toHex(keyPair(fromHex(sv.server_static_private)).pub), sv.server_static_public);
    assert.equal(encodePublicKey(spub), sv.server_static_public_base64url);
    assert.equal(toHex(decodePublicKey(sv.server_static_public_base64url)), sv.server_static_public);
    const xk = sv.pattern === 'XK';
    if (xk) assert.equal(toHex(keyPair(fromHex(sv.client_static_private)).pub), sv.client_static_public);
    const { fetchFn, done } = replayFetch(sv, sv.server_static_public_base64url);
    const cs = await dial({
      baseURL: 'http://127.0.0.1:8080/',
      serverPub: spub,
      fetchFn,
      loginPriv: xk ? fromHex(sv.client_static_private) : null,
      address: xk ? sv.address : '',
      deviceToken: sv.device_token ? fromHex(sv.device_token) : null,
      ephemeral: fromHex(sv.client_ephemeral_private),
    });
    assert.equal(toHex(cs.handshakeHash), sv.handshake_hash);
    assert.equal(toHex(cs.sendKey), sv.client_to_server_key);
    assert.equal(toHex(cs.recvKey), sv.server_to_client_key);
    assert.equal(toHex(cs.id), sv.session_id);
    assert.equal(cs.idText, sv.session_id_header);
    for (const fr of sv.frames) {
      const got = await cs.roundTrip(utf8(fr.request));
      assert.equal(fromUtf8(got), fr.response);
    }
    assert.ok(done(), 'every recorded message was exchanged');
  });

  test(`session ${name}: frames`, () => {
    const sid = fromHex(sv.session_id);
    assert.equal(toBase64url(sid), sv.session_id_header);
    assert.deepEqual(fromBase64url(sv.session_id_header), sid);
    const c2s = fromHex(sv.client_to_server_key);
    const s2c = fromHex(sv.server_to_client_key);
    const nh = sv.pattern === 'XK' ? 4 : 2;
    sv.frames.forEach((fr, i) => {
      assert.equal(toHex(requestAD(sid, fr.counter)), fr.request_ad);
      assert.equal(toHex(responseAD(sid, fr.counter)), fr.response_ad);
      const rq = sealFrame(c2s, fr.counter, fromHex(fr.request_ad), utf8(fr.request));
      assert.equal(toHex(rq), fr.request_body);
      assert.equal(toHex(rq), sv.messages[nh + 2 * i].body);
      assert.equal(sv.messages[nh + 2 * i].headers[HEADER_SESSION], sv.session_id_header);
      assert.equal(sv.messages[nh + 2 * i].headers['Content-Type'], CONTENT_TYPE);
      assert.equal(sv.messages[nh + 2 * i].path, PATH_TRANSPORT);
      const rs = sealFrame(s2c, fr.counter, fromHex(fr.response_ad), utf8(fr.response));
      assert.equal(toHex(rs), fr.response_body);
      assert.equal(toHex(rs), sv.messages[nh + 2 * i + 1].body);
      const [n, pt] = openFrame(s2c, fromHex(fr.response_body), (c) => responseAD(sid, c));
      assert.equal(n, BigInt(fr.counter));
      assert.equal(fromUtf8(pt), fr.response);
      // The request key does not open the response, nor the request AD.
      assert.throws(() => openFrame(c2s, fromHex(fr.response_body), (c) => responseAD(sid, c)), SexmapError);
      assert.throws(() => openFrame(s2c, fromHex(fr.response_body), (c) => requestAD(sid, c)), SexmapError);
    });
  });

  // The server role (SEXMAP.md step 4): with the server's ephemeral key injected, every server
  // message is reproduced too, so the vectors are covered in both directions.
  test(`session ${name}: server role`, () => {
    const xk = sv.pattern === 'XK';
    const client = new HandshakeState({
      pattern: sv.pattern, initiator: true, prologue: PROLOGUE, rs: fromHex(sv.server_static_public),
      s: xk ? keyPair(fromHex(sv.client_static_private)) : null, e: { priv: fromHex(sv.client_ephemeral_private) },
    });
    const server = new HandshakeState({
      pattern: sv.pattern, initiator: false, prologue: PROLOGUE, s: keyPair(fromHex(sv.server_static_private)),
      e: { priv: fromHex(sv.server_ephemeral_private) },
    });
    const first = xk ? FRAME.XK_INIT : FRAME.NK_INIT;
    const m1 = client.writeMessage();
    assert.equal(toHex(Uint8Array.of(first)) + toHex(m1), sv.messages[0].body);
    assert.equal(server.readMessage(m1).length, 0);
    const m2 = server.writeMessage();
    assert.equal(toHex(Uint8Array.of(first + 1)) + toHex(m2), sv.messages[1].body);
    assert.equal(client.readMessage(m2).length, 0);
    if (xk) {
      assert.equal(sv.messages[1].headers[HEADER_HANDSHAKE], sv.handshake_id);
      const m3 = client.writeMessage(loginPayload(sv));
      assert.equal('13' + toHex(m3), sv.messages[2].body);
      assert.equal(sv.messages[2].headers[HEADER_HANDSHAKE], sv.handshake_id);
      assert.equal(sv.messages[2].path, PATH_HANDSHAKE);
      assert.equal(toHex(server.readMessage(m3)), toHex(loginPayload(sv)));
      assert.equal(toHex(server.result.rs), sv.client_static_public);
      assert.equal(sv.messages[3].body, '14');
    }
    assert.equal(toHex(server.result.h), sv.handshake_hash);
    assert.equal(toHex(server.result.c1.k), sv.client_to_server_key);
    assert.equal(toHex(server.result.c2.k), sv.server_to_client_key);
  });
}

test('XK: the first kdf entry is the session login key', () => {
  const xk = V.sessions.find((s) => s.pattern === 'XK');
  assert.equal(xk.client_static_private, V.kdf[0].login_private);
});

test('a tampered server message 2 is refused', async () => {
  const sv = V.sessions[0];
  const bad = structuredClone(sv);
  const b = fromHex(bad.messages[1].body);
  b[b.length - 1] ^= 1;
  bad.messages[1].body = toHex(b);
  const { fetchFn } = replayFetch(bad, sv.server_static_public_base64url);
  await assert.rejects(dial({
    baseURL: 'http://x', serverPub: fromHex(sv.server_static_public), fetchFn,
    ephemeral: fromHex(sv.client_ephemeral_private),
  }), (e) => e instanceof SexmapError && e.kind === 'bad-response');
});

test('a changed server key is reported as such', async () => {
  const other = keyPair(new Uint8Array(32).fill(7)).pub;
  const fetchFn = async (url) => {
    if (new URL(url).pathname === '/.well-known/sexmap') {
      return new Response(encodePublicKey(other) + '\n', { status: 200 });
    }
    return new Response('bad-handshake\n', { status: 400, headers: { 'Content-Type': 'text/plain' } });
  };
  const pinned = fromHex(V.sessions[0].server_static_public);
  await assert.rejects(dial({ baseURL: 'http://x', serverPub: pinned, fetchFn }),
    (e) => e.kind === 'key-changed' && e.pinned === encodePublicKey(pinned) && e.presented === encodePublicKey(other));
  // The same answer with an unchanged key stays a plain bad-handshake.
  const same = async (url) => (new URL(url).pathname === '/.well-known/sexmap'
    ? new Response(encodePublicKey(pinned), { status: 200 })
    : new Response('bad-handshake\n', { status: 400 }));
  await assert.rejects(dial({ baseURL: 'http://x', serverPub: pinned, fetchFn: same }),
    (e) => e.kind === 'status' && e.code === 'bad-handshake');
});

test('status errors carry code and Retry-After', async () => {
  const fetchFn = async () => new Response('too-many-failures\n', { status: 429, headers: { 'Retry-After': '7' } });
  await assert.rejects(dial({ baseURL: 'http://x', serverPub: new Uint8Array(32).fill(9), fetchFn, loginPriv: new Uint8Array(32).fill(1), address: 'a@b.c' }),
    (e) => e.lockedOut && e.code === 'too-many-failures' && e.retryAfter === 7);
});

test('too-old is resent under a new counter, replayed is not', async () => {
  const sv = V.sessions[0];
  const { fetchFn } = replayFetch(sv, sv.server_static_public_base64url);
  const cs = await dial({ baseURL: 'http://x', serverPub: fromHex(sv.server_static_public), fetchFn, ephemeral: fromHex(sv.client_ephemeral_private) });
  const seen = [];
  const c2s = cs.sendKey;
  const s2c = cs.recvKey;
  let answer = 'too-old';
  cs.fetchFn = async (url, init) => {
    const [n, pt] = openFrame(c2s, init.body, (c) => requestAD(cs.id, c));
    seen.push(n);
    if (seen.length === 1) return new Response(answer + '\n', { status: 409 });
    return new Response(sealFrame(s2c, n, responseAD(cs.id, n), pt), { status: 200, headers: { 'Content-Type': CONTENT_TYPE + '; x=y' } });
  };
  assert.equal(fromUtf8(await cs.roundTrip(utf8('echo'))), 'echo');
  assert.deepEqual(seen, [0n, 1n]);
  seen.length = 0;
  answer = 'replayed';
  await assert.rejects(cs.roundTrip(utf8('x')), (e) => e.code === 'replayed');
  assert.deepEqual(seen, [2n]);
});

test('a response under another counter or key is refused', async () => {
  const sv = V.sessions[0];
  const { fetchFn } = replayFetch(sv, sv.server_static_public_base64url);
  const cs = await dial({ baseURL: 'http://x', serverPub: fromHex(sv.server_static_public), fetchFn, ephemeral: fromHex(sv.client_ephemeral_private) });
  cs.fetchFn = async () => new Response(sealFrame(cs.recvKey, 5, responseAD(cs.id, 5), utf8('x')), { status: 200, headers: { 'Content-Type': CONTENT_TYPE } });
  await assert.rejects(cs.roundTrip(utf8('x')), (e) => e.kind === 'bad-response');
  cs.fetchFn = async (url, init) => new Response(init.body, { status: 200, headers: { 'Content-Type': CONTENT_TYPE } });
  await assert.rejects(cs.roundTrip(utf8('x')), (e) => e.kind === 'bad-response');
  cs.fetchFn = async () => new Response('<xmap/>', { status: 200, headers: { 'Content-Type': 'application/xml' } });
  await assert.rejects(cs.roundTrip(utf8('x')), (e) => e.kind === 'bad-response');
});

test('pins', async () => {
  const store = new PinStore(new MemoryStorage());
  const k = fromHex(V.sessions[0].server_static_public);
  assert.equal(store.get('http://a'), null);
  store.set('http://a', k);
  assert.deepEqual(store.get('http://a'), k);
  assert.ok(samePin(store.get('http://a'), k));
  assert.ok(!samePin(store.get('http://a'), keyPair(new Uint8Array(32).fill(3)).pub));
  store.reset('http://a');
  assert.equal(store.get('http://a'), null);
  const fetchFn = async () => new Response(V.sessions[0].server_static_public_base64url + '\n', { status: 200 });
  assert.deepEqual(await fetchServerKey(fetchFn, 'http://a/'), k);
  for (const bad of ['dSUIzJDGVoUlI1u9g8T9fxPYU2F-ycKsZ_MKPVOrYzI=', 'dSUIzJDGVoUlI1u9g8T9fxPYU2F+ycKsZ/MKPVOrYzI', 'dSUIzJDGVoUlI1u9g8T9fxPYU2F-ycKsZ_MKPVOrYzJ', 'abc']) {
    assert.throws(() => decodePublicKey(bad), SexmapError, bad);
  }
});

test('DeviceStore keeps one token per origin and lower-cased address', () => {
  const ds = new DeviceStore(new MemoryStorage());
  const t = new Uint8Array(32).fill(7);
  assert.equal(ds.get('http://a', 'Bob@Example.org'), null);
  ds.set('http://a', 'Bob@Example.org', t);
  assert.deepEqual(ds.get('http://a', 'bob@example.org'), t);
  assert.equal(ds.get('http://b', 'bob@example.org'), null);
  assert.equal(ds.get('http://a', 'alice@example.org'), null);
  ds.reset('http://a', 'BOB@example.org');
  assert.equal(ds.get('http://a', 'bob@example.org'), null);
});

test('dial refuses a device token of the wrong size', async () => {
  const fetchFn = async () => assert.fail('nothing may be sent');
  await assert.rejects(dial({ baseURL: 'http://x', serverPub: new Uint8Array(32).fill(9), fetchFn, loginPriv: new Uint8Array(32).fill(1), address: 'a@b.c', deviceToken: new Uint8Array(31) }),
    (err) => err instanceof SexmapError);
});
