// The web client in a real browser against the real server (started by the Go test
// TestBrowser in package web, which passes the addresses in CM_* variables).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { env, launch, RequestLog, lmtpSend, mailDate } from './harness.mjs';
import { Client } from '../../src/lib/client.js';
import { PinStore, MIN_KDF_PARAMS } from '../../src/lib/sexmap.js';
import { signAndEncrypt, encryptBinary, fingerprint } from '../../src/lib/pgp.js';
import { buildMessage, pgpMIME } from '../../src/lib/mime.js';
import { utf8 } from '../../src/lib/bytes.js';

const origin = new URL(env.url).origin;
const [aliceUser, bobUser, malloryUser] = env.users;
const T = 30000;
const log = new RequestLog(origin);
let browser;
const ctx = {};
const page = {};
let bobPassphrase = bobUser.passphrase;
const subject = `Quarterly figures ${Date.now()}`;

async function shot(p, name) {
  if (env.screenshots) await p.screenshot({ path: path.join(env.screenshots, `${name}.png`), fullPage: false });
}

async function newContext(name, viewport = { width: 1280, height: 800 }) {
  const c = await browser.newContext({ viewport, acceptDownloads: true, locale: 'en-US', timezoneId: 'UTC' });
  await log.watch(c, name);
  c.setDefaultTimeout(T);
  return c;
}

async function signUp(p, u) {
  await p.goto(env.url + '/');
  await p.getByTestId('to-signup').click();
  await p.getByTestId('signup-invite').fill(u.invite);
  await p.getByTestId('signup-address').fill(u.address);
  await p.getByTestId('signup-name').fill(u.name);
  await p.getByTestId('signup-passphrase').fill(u.passphrase);
  await p.getByTestId('signup-passphrase2').fill(u.passphrase);
  await p.getByTestId('signup-submit').click();
  await p.getByTestId('folder-inbox').waitFor();
}

async function signIn(p, address, passphrase) {
  await p.getByTestId('signin-address').fill(address);
  await p.getByTestId('signin-passphrase').fill(passphrase);
  await p.getByTestId('signin-submit').click();
}

function row(p, text) {
  return p.getByTestId('message-row').filter({ hasText: text });
}

before(async () => {
  browser = await launch();
});

after(async () => {
  // The last state of every page, which is what to look at when a step failed.
  for (const [name, p] of Object.entries(page)) {
    if (!p.isClosed()) await shot(p, `zz-last-${name}`).catch(() => {});
  }
  if (browser) await browser.close();
  // Errors the pages logged (failed loads included), for reading along with a failure.
  if (log.consoleErrors.length) console.log(`# console errors:\n# ${log.consoleErrors.join('\n# ')}`);
  if (log.failedResponses.length) console.log(`# failed responses:\n# ${log.failedResponses.join('\n# ')}`);
  if (env.result) writeFileSync(env.result, JSON.stringify({ bobPassphrase, subject }));
});

test('the sign-in page pins the server key on first use and shows it', async () => {
  ctx.alice = await newContext('alice');
  page.alice = await ctx.alice.newPage();
  const r = await page.alice.goto(env.url + '/');
  assert.equal(r.status(), 200);
  const csp = r.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(r.headers()['referrer-policy'], 'no-referrer');
  await page.alice.getByTestId('pin-notice').waitFor();
  const key = (await (await fetch(env.url + '/.well-known/sexmap')).text()).trim();
  assert.ok((await page.alice.getByTestId('pin-notice').textContent()).includes(key));
  await shot(page.alice, '01-sign-in');
});

// Issue 9, item 7: off loopback without TLS, the page, its script and the passphrase form
// would come over a channel anyone on the path can rewrite, so the server does not serve them.
test('a server listening off loopback without TLS does not serve the web client', async () => {
  const c = await browser.newContext();
  c.setDefaultTimeout(T);
  const p = await c.newPage();
  const scripts = [];
  p.on('request', (r) => { if (r.resourceType() === 'script') scripts.push(r.url()); });
  const resp = await p.goto(env.exposed + '/');
  assert.equal(resp.status(), 403);
  await p.getByText('The web client is not served over plain HTTP').waitFor();
  assert.equal(await p.locator('input[type=password]').count(), 0, 'no passphrase form');
  assert.deepEqual(scripts, [], 'no script is loaded');
  const asset = await p.request.get(env.exposed + '/index.html');
  assert.equal(asset.status(), 403);
  await c.close();
});

test('a wrong invite code is refused with a clear message', async () => {
  const p = page.alice;
  await p.getByTestId('to-signup').click();
  await p.getByTestId('signup-invite').fill('NOT-A-REAL-CODE');
  await p.getByTestId('signup-address').fill(aliceUser.address);
  await p.getByTestId('signup-passphrase').fill(aliceUser.passphrase);
  await p.getByTestId('signup-passphrase2').fill(aliceUser.passphrase);
  await shot(p, '02-sign-up');
  await p.getByTestId('signup-submit').click();
  await p.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
});

test('two users sign up with their invites in two browser contexts', async () => {
  ctx.bob = await newContext('bob');
  page.bob = await ctx.bob.newPage();
  await Promise.all([signUp(page.alice, aliceUser), signUp(page.bob, bobUser)]);
  for (const p of [page.alice, page.bob]) {
    assert.deepEqual(await p.getByTestId('folders').locator('.fname').allTextContents(), ['Inbox', 'Sent', 'Drafts', 'Trash', 'Junk']);
  }
  await shot(page.bob, '03-empty-inbox');
});

test('Alice writes to Bob with an attachment; Bob sees it arrive live and downloads it', async () => {
  const a = page.alice;
  const b = page.bob;
  await a.keyboard.press('c');
  await a.getByTestId('composer').waitFor();
  await a.getByTestId('compose-to').fill(`Bob Example <${bobUser.address}>`);
  await a.getByTestId('compose-subject').click();
  await a.locator(`[data-testid=rcpt-status][data-address="${bobUser.address}"][data-e2e=true]`).waitFor();
  await a.getByTestId('compose-subject').fill(subject);
  await a.getByTestId('compose-text').fill('Hello Bob,\n\nthe figures are attached.\n\nAlice');
  await a.getByTestId('compose-attach').setInputFiles(env.attachment);
  await a.getByTestId('compose-attachments').getByText('report.bin').waitFor();
  await shot(a, '04-compose');
  await a.getByTestId('compose-send').click();
  await a.getByTestId('toast').filter({ hasText: 'Sent' }).waitFor();
  await a.getByTestId('composer').waitFor({ state: 'detached' });

  // Bob did nothing: the message appears through the long poll.
  await row(b, subject).waitFor();
  await b.waitForFunction(() => document.querySelector('[data-testid=folder-inbox] .count')?.textContent === '1');
  await shot(b, '05-inbox');
  await row(b, subject).click();
  await b.getByTestId('msg-subject').filter({ hasText: subject }).waitFor();
  await b.getByTestId('badge-e2e').waitFor();
  await b.getByTestId('badge-sig-verified').waitFor();
  assert.match(await b.getByTestId('msg-from').textContent(), /Alice Example <alice@example\.test>/);
  assert.match(await b.getByTestId('mail-text').textContent(), /the figures are attached/);
  const [download] = await Promise.all([b.waitForEvent('download'), b.getByTestId('attachment').click()]);
  assert.equal(download.suggestedFilename(), 'report.bin');
  const got = readFileSync(await download.path());
  assert.ok(got.equals(readFileSync(env.attachment)), 'the downloaded attachment is the file Alice attached');
  await shot(b, '06-message');
  await b.waitForFunction(() => !document.querySelector('[data-testid=folder-inbox] .count'));
});

test('Bob replies with the keyboard; Alice sees the reply live, in her Sent the original', async () => {
  const a = page.alice;
  const b = page.bob;
  await b.keyboard.press('r');
  await b.getByTestId('composer').waitFor();
  assert.equal(await b.getByTestId('compose-to').inputValue(), 'Alice Example <alice@example.test>');
  assert.equal(await b.getByTestId('compose-subject').inputValue(), `Re: ${subject}`);
  await b.getByTestId('compose-text').press('Control+Home');
  await b.getByTestId('compose-text').pressSequentially('Thanks, got them.');
  await b.keyboard.press('Control+Enter');
  await b.getByTestId('toast').filter({ hasText: 'Sent' }).waitFor();
  await row(a, `Re: ${subject}`).waitFor();
  await row(a, `Re: ${subject}`).click();
  await a.getByTestId('badge-sig-verified').waitFor();
  assert.match(await a.getByTestId('mail-text').textContent(), /Thanks, got them\.[\s\S]*> the figures are attached/);
  await a.getByTestId('folder-sent').click();
  await row(a, subject).first().waitFor();
  await a.getByTestId('folder-inbox').click();
  await row(a, `Re: ${subject}`).waitFor();
});

test('mail from outside over LMTP: read, moved, deleted, and Trash emptied', async () => {
  const a = page.alice;
  const extSubject = 'Lunch on Friday?';
  const replies = await lmtpSend(env.lmtp, 'dana@remote.example', [aliceUser.address], [
    'From: Dana Remote <dana@remote.example>',
    `To: ${aliceUser.address}`,
    `Subject: ${extSubject}`,
    `Date: ${mailDate()}`,
    'Message-ID: <lunch-1@remote.example>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Shall we meet at noon? The menu: https://remote.example/menu',
    '<script>document.title="PWNED"</script> stays text.',
  ].join('\n'));
  assert.match(replies[0], /^250/);
  await row(a, extSubject).waitFor();
  await a.getByTestId('toast').filter({ hasText: 'Dana Remote' }).waitFor();
  await row(a, extSubject).click();
  await a.getByTestId('badge-not-e2e').waitFor();
  assert.match(await a.getByTestId('mail-text').textContent(), /<script>document\.title="PWNED"<\/script> stays text\./);
  assert.equal(await a.title(), 'CryptoMail');
  assert.equal(await a.getByTestId('mail-text').locator('a').getAttribute('href'), 'https://remote.example/menu');

  await a.getByTestId('move-select').selectOption({ label: 'Junk' });
  await a.getByTestId('toast').filter({ hasText: 'Moved to Junk' }).waitFor();
  await row(a, extSubject).waitFor({ state: 'detached' });
  await a.getByTestId('folder-junk').click();
  await row(a, extSubject).click();
  await a.getByTestId('delete').click();
  await a.getByTestId('toast').filter({ hasText: 'Moved to Trash' }).waitFor();
  await a.getByTestId('folder-trash').click();
  await row(a, extSubject).waitFor();
  a.once('dialog', (d) => d.accept());
  await a.getByTestId('empty-trash').click();
  await a.getByTestId('toast').filter({ hasText: 'deleted for good' }).waitFor();
  await a.getByTestId('message-list').getByText('No messages.').waitFor();
  await a.getByTestId('folder-inbox').click();
});

test('HTML mail: its script never runs and nothing remote loads until allowed', async () => {
  const a = page.alice;
  const html = [
    '<html><head><style>h1 { color: #1f5fbf } .bg { background: url(https://tracker.example/bg.png) } p { background: url("/healthz?from-css") }</style></head><body>',
    '<h1 id="hello">Monthly newsletter</h1><p>Hello <b>Alice</b>, here is the news.</p>',
    '<img id="pixel" src="http://tracker.example/pixel.png?u=alice" alt="pixel">',
    '<img src="x" onerror="parent.document.title=\'PWNED\'">',
    '<script>parent.document.title = "PWNED"; top.postMessage("pwned", "*");</script>',
    '<a id="js" href="javascript:parent.document.title=\'PWNED\'">click</a>',
    '<form action="https://tracker.example/collect"><input name="q"></form>',
    '<div class="bg" style="background-image: url(https://tracker.example/inline.png)">styled</div>',
    '</body></html>',
  ].join('\n');
  await lmtpSend(env.lmtp, 'news@remote.example', [aliceUser.address], [
    'From: News <news@remote.example>', `To: ${aliceUser.address}`, 'Subject: Newsletter with tracking',
    `Date: ${mailDate()}`, 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="alt"', '',
    '--alt', 'Content-Type: text/plain; charset=utf-8', '', 'Monthly newsletter (text version)',
    '--alt', 'Content-Type: text/html; charset=utf-8', '', html, '--alt--',
  ].join('\n'));
  const pwned = [];
  await a.exposeBinding('__reportPwned', () => pwned.push('message'));
  await a.evaluate(() => window.addEventListener('message', (ev) => { if (ev.data === 'pwned') window.__reportPwned(); }));
  log.phase = 'html-blocked';
  await row(a, 'Newsletter with tracking').click();
  await a.getByTestId('remote-blocked').waitFor();
  const frame = a.locator('iframe.mailframe');
  await frame.waitFor();
  assert.equal(await frame.getAttribute('sandbox'), 'allow-same-origin allow-popups allow-popups-to-escape-sandbox');
  await a.waitForFunction(() => {
    const f = document.querySelector('iframe.mailframe');
    return f && f.contentDocument && f.contentDocument.getElementById('hello');
  });
  const inside = await a.evaluate(() => {
    const d = document.querySelector('iframe.mailframe').contentDocument;
    return {
      h1: d.getElementById('hello').textContent,
      scripts: d.querySelectorAll('script').length,
      handlers: [...d.querySelectorAll('*')].filter((e) => [...e.attributes].some((at) => at.name.startsWith('on'))).length,
      pixel: d.getElementById('pixel') && d.getElementById('pixel').getAttribute('src'),
      jsLink: d.getElementById('js') && d.getElementById('js').getAttribute('href'),
      forms: d.querySelectorAll('form, input').length,
      color: getComputedStyle(d.getElementById('hello')).color,
    };
  });
  assert.deepEqual(inside, { h1: 'Monthly newsletter', scripts: 0, handlers: 0, pixel: null, jsLink: null, forms: 0, color: 'rgb(31, 95, 191)' });
  await a.waitForTimeout(500);
  assert.equal(await a.title(), 'CryptoMail');
  assert.deepEqual(pwned, []);
  assert.deepEqual(log.foreign, [], 'nothing remote was requested');
  await shot(a, '07-html-mail-blocked');

  // Allowing remote content reloads the frame under a policy that permits images: now
  // (and only now) the tracker is asked for, which the test's network log refuses.
  // From here on the message may load remote content whenever it is shown again.
  log.phase = 'after-allow';
  await a.getByTestId('allow-remote').click();
  await a.waitForFunction(() => {
    const f = document.querySelector('iframe.mailframe');
    return f && f.src.endsWith('remote=1') && f.contentDocument && f.contentDocument.getElementById('pixel');
  });
  const deadline = Date.now() + T;
  while (Date.now() < deadline && !log.foreign.some((f) => f.url.startsWith('http://tracker.example/pixel.png'))) await a.waitForTimeout(100);
  assert.ok(log.foreign.some((f) => f.url.startsWith('http://tracker.example/pixel.png') && f.phase === 'after-allow'), JSON.stringify(log.foreign));
  assert.equal(await a.title(), 'CryptoMail');
  assert.deepEqual(pwned, []);
  assert.ok(!log.failedResponses.some((r) => /\/x$/.test(r)), 'no relative reference of the mail reached this server');
  assert.ok(!log.all.some((u) => u.includes('from-css')), 'no relative CSS reference of the mail reached this server');
  await a.getByTestId('folder-inbox').click();
});

// Issue 9, item 11: escaped url() forms and image-set() in a mail's CSS. The browser's CSS
// parser reads u\72 l( and \75 rl( as url(; the filter must see them as the frame would:
// the remote-content notice appears, and nothing loads.
test('HTML mail: escaped CSS URLs and image-set are blocked and announced', async () => {
  const a = page.alice;
  const html = [
    '<html><head><style>',
    '.e1 { background: u\\72 l(https://tracker.example/escaped1.png) }',
    '.e2 { background: \\75 rl(https://tracker.example/escaped2.png) }',
    '.e3 { background-image: image-set("https://tracker.example/set.png" 1x) }',
    '.e4 { background-image: -webkit-image-set("https://tracker.example/wset.png" 1x) }',
    '.e5 { --x: u\\72 l(https://tracker.example/var.png); background-image: var(--x) }',
    '</style></head><body>',
    '<div id="e1" class="e1">one</div><div id="e2" class="e2">two</div><div id="e3" class="e3">three</div>',
    '<div id="e4" class="e4">four</div><div id="e5" class="e5">five</div>',
    '<div id="e6" style="background: u\\72 l(https://tracker.example/inline-escaped.png)">six</div>',
    '<div id="e7" style="background-image: image-set(&quot;https://tracker.example/inline-set.png&quot; 1x)">seven</div>',
    '</body></html>',
  ].join('\n');
  await lmtpSend(env.lmtp, 'styles@remote.example', [aliceUser.address], [
    'From: Styles <styles@remote.example>', `To: ${aliceUser.address}`, 'Subject: Escaped styles',
    `Date: ${mailDate()}`, 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', html,
  ].join('\n'));
  const before = log.phase; // 'after-allow': the newsletter may load its tracker when shown again
  log.phase = 'css-escapes';
  await row(a, 'Escaped styles').click();
  await a.getByTestId('remote-blocked').waitFor();
  await a.waitForFunction(() => {
    const f = document.querySelector('iframe.mailframe');
    return f && f.contentDocument && f.contentDocument.getElementById('e7');
  });
  const images = await a.evaluate(() => {
    const d = document.querySelector('iframe.mailframe').contentDocument;
    return ['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7'].map((id) => getComputedStyle(d.getElementById(id)).backgroundImage);
  });
  assert.deepEqual(images, ['none', 'none', 'none', 'none', 'none', 'none', 'none'], 'no remote image is left in the frame');
  await a.waitForTimeout(500);
  assert.deepEqual(log.foreign.filter((f) => f.phase === 'css-escapes'), [], 'nothing remote was requested');
  assert.ok(!log.consoleProblems.some((p) => p.phase === 'css-escapes' && /tracker\.example/.test(p.text)), 'the frame did not even try: ' + JSON.stringify(log.consoleProblems));
  log.phase = before;
  await a.getByTestId('folder-inbox').click();
});

test('flags, unread counts and keyboard shortcuts', async () => {
  const a = page.alice;
  await a.getByTestId('folder-inbox').click();
  await row(a, 'Newsletter with tracking').waitFor();
  const rows = a.getByTestId('message-row');
  const n = await rows.count();
  assert.ok(n >= 2);
  await a.locator('body').click({ position: { x: 5, y: 5 } });
  await a.keyboard.press('j');
  await a.locator('[data-testid=message-row].selected').first().waitFor();
  const first = await a.locator('[data-testid=message-row].selected').getAttribute('data-id');
  await a.getByTestId('msg-subject').waitFor();
  await a.keyboard.press('j');
  await a.waitForFunction((id) => document.querySelector('[data-testid=message-row].selected')?.dataset.id !== id, first);
  await a.keyboard.press('k');
  await a.waitForFunction((id) => document.querySelector('[data-testid=message-row].selected')?.dataset.id === id, first);
  await a.getByTestId('msg-subject').waitFor();
  await a.getByTestId('flag').click();
  await a.locator('[data-testid=message-row].selected .flag').waitFor();
  await a.getByTestId('mark-unread').click();
  await a.locator('[data-testid=message-row].selected.unread').waitFor();
  // The folder's unread count follows: it equals the unread rows (the inbox fits one page).
  await a.waitForFunction(() => {
    const shown = Number(document.querySelector('[data-testid=folder-inbox] .count')?.textContent || 0);
    return shown > 0 && shown === document.querySelectorAll('[data-testid=message-row].unread').length;
  });
  await a.keyboard.press('/');
  assert.equal(await a.evaluate(() => document.activeElement.dataset.testid), 'filter');
  await a.keyboard.type('newsletter');
  await a.waitForFunction(() => document.querySelectorAll('[data-testid=message-row]').length === 1);
  await row(a, 'Newsletter with tracking').waitFor();
  await a.keyboard.press('Escape');
  await a.waitForFunction((want) => document.querySelectorAll('[data-testid=message-row]').length === want, n);
});

test('phone width: one pane at a time', async () => {
  const a = page.alice;
  await a.setViewportSize({ width: 390, height: 844 });
  const back = a.getByRole('button', { name: 'Back to the list' });
  if (await back.isVisible()) await back.click();
  await a.getByTestId('folder-inbox').click();
  await a.getByTestId('message-list').waitFor();
  await a.getByTestId('reader').waitFor({ state: 'hidden' });
  await row(a, 'Re: ').first().waitFor();
  await shot(a, '08-phone-inbox');
  await row(a, 'Re: ').first().click();
  await a.getByTestId('badge-e2e').waitFor();
  await a.getByTestId('message-list').waitFor({ state: 'hidden' });
  await shot(a, '09-phone-message');
  await a.getByRole('button', { name: 'Back to the list' }).click();
  await a.getByTestId('message-list').waitFor();
  await a.setViewportSize({ width: 1280, height: 800 });
});

test('a recipient without a key gets mail only with explicit consent', async () => {
  const a = page.alice;
  await a.keyboard.press('c');
  await a.getByTestId('compose-to').fill('carol@remote.example');
  await a.getByTestId('compose-subject').fill('Readable?');
  const status = a.locator('[data-testid=rcpt-status][data-address="carol@remote.example"][data-e2e=false]');
  await status.waitFor();
  await status.getByTestId('allow-plaintext').waitFor();
  await a.getByTestId('compose-text').fill('Not for a provider to read.');
  await a.getByTestId('compose-send').click();
  await a.getByTestId('compose-error').filter({ hasText: 'No encryption key is known for carol@remote.example' }).waitFor();
  await shot(a, '12-compose-no-key');
  a.once('dialog', (d) => d.accept());
  await a.getByRole('button', { name: 'Discard' }).click();
  await a.getByTestId('composer').waitFor({ state: 'detached' });
  await a.getByTestId('folder-sent').click();
  await row(a, subject).first().waitFor();
  assert.equal(await row(a, 'Readable?').count(), 0, 'nothing was sent');
  await a.getByTestId('folder-inbox').click();
});

test('Bob forwards the message with its attachment; Alice gets it', async () => {
  const a = page.alice;
  const b = page.bob;
  await b.getByTestId('folder-inbox').click();
  await row(b, subject).filter({ hasNotText: 'Re:' }).click();
  await b.getByTestId('attachment').waitFor();
  await b.keyboard.press('f');
  await b.getByTestId('composer').waitFor();
  assert.equal(await b.getByTestId('compose-subject').inputValue(), `Fwd: ${subject}`);
  await b.getByTestId('compose-attachments').getByText('report.bin').waitFor();
  await b.getByTestId('compose-to').fill(aliceUser.address);
  await b.getByTestId('compose-send').click();
  await b.getByTestId('toast').filter({ hasText: 'Sent' }).waitFor();
  await row(a, `Fwd: ${subject}`).click();
  await a.getByTestId('badge-sig-verified').waitFor();
  const [download] = await Promise.all([a.waitForEvent('download'), a.getByTestId('attachment').click()]);
  assert.ok(readFileSync(await download.path()).equals(readFileSync(env.attachment)));
  assert.match(await a.getByTestId('mail-text').textContent(), /Forwarded message[\s\S]*the figures are attached/);
});

// Issue 9, item 1: Mallory, a local user, sends Bob a message whose protected From is
// Alice, signed with Mallory's own key, with a list line (summary) that says Alice too.
// Bob's list marks the line unverified; the open message does not say "Signature
// verified" and names Mallory as the signer.
test('a message forged as Alice by another local user is not shown as verified', async () => {
  const b = page.bob;
  const pins = new Map();
  const mc = new Client({
    baseURL: env.url, fetchFn: (...a) => fetch(...a), kdfParams: MIN_KDF_PARAMS,
    pins: new PinStore({ getItem: (k) => pins.get(k) ?? null, setItem: (k, v) => pins.set(k, v), removeItem: (k) => pins.delete(k) }),
  });
  const { keys } = await mc.signup({ invite: malloryUser.invite, address: malloryUser.address, passphrase: malloryUser.passphrase });
  const m = await mc.loginWithKeys(malloryUser.address, keys);
  const bobKey = (await m.lookupKeys([bobUser.address])).get(bobUser.address);
  assert.ok(bobKey, "Mallory can look Bob's key up");
  const forged = `Invoice ${Date.now()}`;
  const alice = 'Alice Example <alice@example.test>';
  const inner = buildMessage([['From', alice], ['To', bobUser.address], ['Date', mailDate()], ['Message-ID', `<forged-${Date.now()}@example.test>`]], forged, 'Please wire the money today.\n', [], true);
  const armored = await signAndEncrypt(inner, m.privateKey(), [bobKey]);
  const body = pgpMIME([['From', malloryUser.address], ['To', bobUser.address], ['Date', mailDate()]], armored);
  const summary = await encryptBinary(utf8(JSON.stringify({ from: alice, to: [bobUser.address], cc: [], subject: forged, date: new Date().toISOString(), message_id: '', snippet: 'Please wire the money today.', has_attachments: false })), [bobKey]);
  await m.one('send', { recipients: [{ address: bobUser.address, encrypted: true, summary }], body });
  const mallory = fingerprint(m.privateKey());
  await m.logout();

  await b.getByTestId('folder-inbox').click();
  await row(b, forged).waitFor();
  await row(b, forged).getByTestId('summary-unverified').waitFor();
  assert.match(await row(b, forged).getByTestId('summary-unverified').getAttribute('title'), /written by the sender/);
  await row(b, forged).click();
  await b.getByTestId('msg-subject').filter({ hasText: forged }).waitFor();
  await b.getByTestId('badge-sig-other-signer').waitFor();
  assert.equal(await b.getByTestId('badge-sig-verified').count(), 0, 'not "Signature verified"');
  const badge = await b.getByTestId('badge-sig-other-signer').textContent();
  assert.ok(badge.includes(`Signed by ${malloryUser.address}, not by the sender shown`) && badge.includes(mallory), badge);
  assert.match(await b.getByTestId('msg-from').textContent(), /alice@example\.test/);
  // Opened and checked: the list line now shows the checked From, marked as not signed by it.
  await row(b, forged).getByTestId('summary-forged').waitFor();
  assert.equal(await row(b, forged).getByTestId('summary-unverified').count(), 0);
  await shot(b, '13-forged-sender');
});

test('the message list pages from decrypted summaries', async () => {
  const b = page.bob;
  await b.getByTestId('folder-inbox').click();
  await b.getByTestId('message-row').first().waitFor();
  const before = await b.getByTestId('message-row').count();
  const n = 51;
  for (let i = 0; i < n; i++) {
    await lmtpSend(env.lmtp, 'lists@remote.example', [bobUser.address], [
      'From: A List <lists@remote.example>', `To: ${bobUser.address}`, `Subject: Digest number ${i}`,
      `Date: ${mailDate()}`, '', `Issue ${i} of the digest.`,
    ].join('\n'));
  }
  // They arrive live; then the folder is listed afresh, one page at a time.
  await row(b, `Digest number ${n - 1}`).waitFor();
  await b.getByTestId('folder-sent').click();
  await b.getByTestId('folder-inbox').click();
  await row(b, `Digest number ${n - 1}`).waitFor();
  assert.equal(await b.getByTestId('message-row').count(), 50);
  await b.getByTestId('load-more').click();
  await b.waitForFunction((want) => document.querySelectorAll('[data-testid=message-row]').length === want, before + n);
  assert.equal(await b.getByTestId('load-more').isVisible(), false);
  await row(b, subject).first().waitFor();
});

test('passphrase change, sign-out, and sign-in with the new passphrase only', async () => {
  const b = page.bob;
  const next = 'a brand new passphrase for bob';
  await b.getByTestId('account-menu').click();
  await b.getByTestId('change-passphrase').click();
  await b.getByTestId('new-passphrase').fill(next);
  await b.getByTestId('new-passphrase2').fill(next);
  await b.getByTestId('change-passphrase-submit').click();
  await b.getByTestId('toast').filter({ hasText: 'Passphrase changed' }).waitFor();
  bobPassphrase = next;
  await b.getByTestId('account-menu').click();
  await b.getByTestId('signout').click();
  await b.getByTestId('signin-submit').waitFor();
  await signIn(b, bobUser.address, bobUser.passphrase);
  await b.getByRole('alert').filter({ hasText: 'Wrong address or passphrase' }).waitFor();
  await shot(b, '10-wrong-passphrase');
  await signIn(b, bobUser.address, next);
  await b.getByTestId('folder-inbox').waitFor();
  await row(b, 'Digest number 50').waitFor();
});

test('a changed server key stops the sign-in and says so', async () => {
  const c = await newContext('mallory');
  await c.addInitScript((o) => {
    if (window.location.origin === o) localStorage.setItem(`cryptomail.pin.${o}`, 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE');
  }, origin);
  const p = await c.newPage();
  await p.goto(env.url + '/');
  await signIn(p, aliceUser.address, aliceUser.passphrase);
  await p.getByTestId('key-changed').waitFor();
  assert.ok((await p.locator('.keys').textContent()).includes('AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE'));
  await shot(p, '11-key-changed');
  await c.close();
});

test('no page requested anything from another origin, and no policy was violated', async () => {
  // Only after Alice allowed remote content, and only her page, asked the tracker for images.
  assert.deepEqual(log.foreign.filter((f) => f.phase !== 'after-allow'), []);
  assert.ok(log.foreign.every((f) => new URL(f.url).host === 'tracker.example' && f.context === 'alice'), JSON.stringify(log.foreign));
  assert.ok(log.all.length > 20, `${log.all.length} requests logged`);
  assert.deepEqual(log.pageErrors, []);
  // The hostile HTML mail trips the policies while it is sanitised and shown (inline handlers
  // and styles in DOMPurify's inert document, a relative image in the frame): those reports
  // are the policies doing their job. Anywhere else a report would mean a broken page.
  assert.deepEqual(log.consoleProblems.filter((p) => p.phase === 'default'), []);
  assert.ok(log.consoleProblems.every((p) => /inline style|inline event handler|Loading the image/.test(p.text)), JSON.stringify(log.consoleProblems));
});
