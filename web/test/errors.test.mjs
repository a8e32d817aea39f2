// What the UI tells people for each failure (src/ui/errors.js): the cases the issue names
// (wrong passphrase, expired invite, server key changed) and the fallbacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describe } from '../src/ui/errors.js';
import { SexmapError } from '../src/lib/sexmap.js';
import { XMAPError } from '../src/lib/xmap.js';
import { UnsealError } from '../src/lib/sealed.js';
import { MissingKeysError } from '../src/lib/client.js';

test('error messages', () => {
  const cases = [
    [new SexmapError('status', '', { status: 403, code: 'login-failed' }), 'login', /Wrong address or passphrase/],
    [new SexmapError('status', '', { status: 429, code: 'too-many-failures', retryAfter: 900 }), 'login', /Try again in 15 minutes/],
    [new SexmapError('status', '', { status: 429, code: 'too-many-failures', retryAfter: 7 }), 'login', /Try again in 7 seconds/],
    [new SexmapError('status', '', { status: 429, code: 'rate-limited', retryAfter: 30 }), 'login', /Too many attempts from your network\. Try again in 30 seconds/],
    [new SexmapError('status', '', { status: 503, code: 'busy' }), '', /busy/],
    [new SexmapError('key-changed', '', { pinned: 'a', presented: 'b' }), '', /key has changed/],
    [new SexmapError('network', ''), '', /cannot be reached/],
    [new SexmapError('kdf', 'KDF parameters out of range'), '', /unsafe key-derivation/],
    [new XMAPError('expired', 'invite expired'), 'signup', /expired\. Ask your administrator/],
    [new XMAPError('invalid-invite', 'x'), 'signup', /not valid for this address/],
    [new XMAPError('conflict', 'x'), 'signup', /already has an account/],
    [new XMAPError('internal', 'internal error'), '', /server failed/],
    [new XMAPError('some-future-code', 'x'), '', /server failed/],
    [new UnsealError(), '', /does not open with this passphrase/],
    [new MissingKeysError(['carol@remote.example']), '', /carol@remote\.example/],
  ];
  for (const [err, ctx, want] of cases) assert.match(describe(err, ctx), want, `${err.name} ${err.code || err.kind || ''}`);
  const saved = console.error;
  console.error = () => {};
  try {
    assert.equal(describe(new TypeError('boom')), 'Something went wrong. Try again.');
  } finally {
    console.error = saved;
  }
});
