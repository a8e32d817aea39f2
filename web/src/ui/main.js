// The CryptoMail web app: sign-in and sign-up, then the mailbox. Every key and every
// decryption stays in this page; reloading it signs out.
import { Client } from '../lib/client.js';
import { PinStore, DeviceStore, MemoryStorage, SexmapError } from '../lib/sexmap.js';
import { deriveInWorker } from '../lib/derive-worker.js';
import { h, replace } from './dom.js';
import { describe } from './errors.js';
import { Mailbox } from './mailbox.js';

const root = document.getElementById('app');

function storage() {
  try {
    const s = window.localStorage;
    s.getItem('probe');
    return s;
  } catch {
    return new MemoryStorage(); // private modes without storage: pin for this page only
  }
}

const state = {
  pinnedNow: '', // the key pinned on first use in this page, shown once for comparison
  lastAddress: storage().getItem('cryptomail.address') || '',
};

const client = new Client({
  baseURL: window.location.origin,
  fetchFn: (url, init) => window.fetch(url, init),
  pins: new PinStore(storage()),
  // A token kept only in memory would be lost with the page and push a real device's
  // token out of the server's bounded list: without localStorage, keep none.
  devices: storage() instanceof MemoryStorage ? null : new DeviceStore(storage()),
  onPin: (key) => {
    state.pinnedNow = key;
  },
  derive: deriveInWorker,
});

// ---- shared pieces ----------------------------------------------------------------------

function progressView() {
  const bar = h('progress', { max: 100, value: 0, class: 'progress', hidden: true });
  const label = h('p', { class: 'progress-label', role: 'status', 'aria-live': 'polite' });
  const steps = {
    salt: 'Looking up your account…',
    key: 'Generating your key pair…',
    derive: 'Deriving keys from your passphrase',
    account: 'Creating your account…',
    login: 'Signing in…',
    unseal: 'Opening your private key…',
  };
  return {
    nodes: [bar, label],
    step(name, p) {
      bar.hidden = false;
      if (name === 'derive') {
        bar.value = Math.round(p * 100);
        label.textContent = `${steps.derive}: ${Math.round(p * 100)}%`;
      } else {
        bar.removeAttribute('value');
        label.textContent = steps[name] || '';
      }
    },
    done() {
      bar.hidden = true;
      label.textContent = '';
    },
  };
}

function errorBox() {
  const box = h('div', { class: 'error', role: 'alert', hidden: true });
  return {
    node: box,
    show(msg) {
      box.hidden = false;
      box.textContent = msg;
    },
    clear() {
      box.hidden = true;
      box.textContent = '';
    },
  };
}

function field(label, input) {
  return h('label', { class: 'field' }, h('span', { text: label }), input);
}

function pinNotice() {
  if (!state.pinnedNow) return null;
  return h('div', { class: 'notice', 'data-testid': 'pin-notice' },
    h('p', { text: 'First visit: this browser now trusts the server key' }),
    h('code', { class: 'key', text: state.pinnedNow }),
    h('p', { text: 'Compare it with the key your administrator published (cryptomail server-key). From now on, a different key stops the sign-in.' }));
}

function authShell(title, ...body) {
  replace(root, h('main', { class: 'auth' },
    h('div', { class: 'auth-card' },
      h('h1', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true', text: '✉' }), 'CryptoMail'),
      h('h2', { text: title }),
      ...body,
      h('p', { class: 'fineprint', text: 'Your passphrase and keys never leave this page. The server stores only mail it cannot read.' }))));
}

// ---- key changed ------------------------------------------------------------------------

async function keyChangedView(err, retry) {
  let presented = err.presented || '';
  if (!presented) {
    try {
      presented = await client.presentedKey();
    } catch {
      presented = '(could not be fetched)';
    }
  }
  const confirm = h('input', { type: 'checkbox', id: 'trust-new' });
  const trust = h('button', {
    class: 'danger', type: 'button', disabled: true,
    onclick: () => {
      client.resetPin();
      state.pinnedNow = '';
      retry();
    },
  }, 'Trust the new key');
  confirm.addEventListener('change', () => {
    trust.disabled = !confirm.checked;
  });
  authShell('The server key changed',
    h('div', { class: 'error', role: 'alert', 'data-testid': 'key-changed' },
      h('p', { text: "The server presents a different key from the one this browser trusts. Either the server was reinstalled, or someone is intercepting your connection. Nothing was sent." })),
    h('dl', { class: 'keys' },
      h('dt', { text: 'Trusted key' }), h('dd', {}, h('code', { class: 'key', text: err.pinned || '' })),
      h('dt', { text: 'Key presented now' }), h('dd', {}, h('code', { class: 'key', text: presented }))),
    h('p', { text: 'Ask your administrator for the current key (cryptomail server-key). Only if it matches the key presented now:' }),
    h('label', { class: 'check' }, confirm, ' I checked the new key with my administrator'),
    h('div', { class: 'actions' }, trust, h('button', { type: 'button', onclick: () => signInView() }, 'Back')));
}

function handleAuthError(err, errors, retry, context) {
  if (err instanceof SexmapError && err.kind === 'key-changed') {
    keyChangedView(err, retry);
    return;
  }
  errors.show(describe(err, context));
}

// ---- sign in ----------------------------------------------------------------------------

function signInView(message = '') {
  const address = h('input', { type: 'email', name: 'address', autocomplete: 'username', required: true, value: state.lastAddress, 'data-testid': 'signin-address' });
  const pass = h('input', { type: 'password', name: 'passphrase', autocomplete: 'current-password', required: true, 'data-testid': 'signin-passphrase' });
  const errors = errorBox();
  const prog = progressView();
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'signin-submit' }, 'Sign in');
  const form = h('form', {
    class: 'auth-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      errors.clear();
      submit.disabled = true;
      const addr = address.value.trim();
      const passphrase = pass.value;
      try {
        const session = await client.login(addr, passphrase, { onStep: (n, p) => prog.step(n, p) });
        pass.value = '';
        state.lastAddress = addr;
        storage().setItem('cryptomail.address', addr);
        openMailbox(session);
      } catch (err) {
        prog.done();
        submit.disabled = false;
        handleAuthError(err, errors, () => signInView(), 'login');
      }
    },
  }, field('Address', address), field('Passphrase', pass), errors.node, ...prog.nodes, submit);
  authShell('Sign in',
    message ? h('div', { class: 'notice', role: 'status', text: message }) : null,
    pinNotice(),
    form,
    h('p', { class: 'switch' }, 'Have an invite? ', h('a', { href: '#signup', 'data-testid': 'to-signup', onclick: (ev) => { ev.preventDefault(); signUpView(); } }, 'Create your account')));
  (state.lastAddress ? pass : address).focus();
  // Pin on first use now, so the key can be compared before a passphrase is typed.
  if (!state.pinnedNow && !client.pins.get(client.baseURL)) {
    client.serverKey().then(() => {
      if (state.pinnedNow && root.contains(form)) {
        const n = pinNotice();
        form.before(n);
      }
    }).catch(() => {});
  }
}

// ---- sign up ----------------------------------------------------------------------------

function signUpView() {
  const params = new URLSearchParams(window.location.hash.replace(/^#signup\??/, ''));
  const invite = h('input', { name: 'invite', required: true, autocomplete: 'off', spellcheck: 'false', value: params.get('invite') || '', 'data-testid': 'signup-invite' });
  const address = h('input', { type: 'email', name: 'address', autocomplete: 'username', required: true, value: params.get('address') || '', 'data-testid': 'signup-address' });
  const name = h('input', { name: 'name', autocomplete: 'name', 'data-testid': 'signup-name' });
  const pass = h('input', { type: 'password', name: 'passphrase', autocomplete: 'new-password', required: true, minlength: 8, 'data-testid': 'signup-passphrase' });
  const pass2 = h('input', { type: 'password', name: 'passphrase2', autocomplete: 'new-password', required: true, 'data-testid': 'signup-passphrase2' });
  const errors = errorBox();
  const prog = progressView();
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'signup-submit' }, 'Create account');
  const form = h('form', {
    class: 'auth-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      errors.clear();
      if (pass.value !== pass2.value) {
        errors.show('The two passphrases differ.');
        return;
      }
      if (pass.value.length < 8) {
        errors.show('Choose a passphrase of at least 8 characters; several words are best.');
        return;
      }
      submit.disabled = true;
      const addr = address.value.trim();
      try {
        const { keys } = await client.signup({ invite: invite.value.trim(), address: addr, passphrase: pass.value, name: name.value.trim(), onStep: (n, p) => prog.step(n, p) });
        pass.value = '';
        pass2.value = '';
        const session = await client.loginWithKeys(addr, keys, { onStep: (n, p) => prog.step(n, p) });
        state.lastAddress = addr;
        storage().setItem('cryptomail.address', addr);
        openMailbox(session);
      } catch (err) {
        prog.done();
        submit.disabled = false;
        handleAuthError(err, errors, () => signUpView(), 'signup');
      }
    },
  }, field('Invite code', invite), field('Address', address), field('Your name (optional)', name),
  field('Passphrase', pass), field('Passphrase again', pass2), errors.node, ...prog.nodes, submit);
  authShell('Create your account', pinNotice(), form,
    h('p', { class: 'switch' }, 'Already have an account? ', h('a', { href: '#', 'data-testid': 'to-signin', onclick: (ev) => { ev.preventDefault(); signInView(); } }, 'Sign in')));
  invite.focus();
}

// ---- the mailbox --------------------------------------------------------------------------

let mailbox = null;

function openMailbox(session) {
  state.pinnedNow = '';
  mailbox = new Mailbox(root, session, {
    onSignOut: (message) => {
      mailbox = null;
      signInView(message);
    },
  });
  mailbox.start();
}

window.addEventListener('pagehide', () => {
  if (mailbox) mailbox.signOut();
});

if (window.location.hash.startsWith('#signup')) signUpView();
else signInView();
