// What each failure means to the person in front of the screen. Error texts never include
// message content or secrets; server-side reasons are shown only for XMAP codes that carry a
// user-facing reason (the server's texts never hold internal detail, XMAP.md).
import { SexmapError } from '../lib/sexmap.js';
import { XMAPError } from '../lib/xmap.js';
import { UnsealError } from '../lib/sealed.js';
import { PGPError } from '../lib/pgp.js';
import { MissingKeysError, ClientError } from '../lib/client.js';

const XMAP_TEXT = {
  'invalid-invite': 'This invite code is not valid for this address: it is unknown, already used, or issued for another address.',
  expired: 'This invite code has expired. Ask your administrator for a new one.',
  conflict: 'That name or address is already taken.',
  'over-quota': 'The mailbox is full.',
  'too-large': 'That is larger than the server accepts.',
  'limit-exceeded': 'That is more than the server accepts at once.',
  'rate-limited': 'Too many requests. Wait a moment and try again.',
  'not-found': 'It no longer exists (perhaps it was moved or deleted elsewhere).',
  denied: 'That is not allowed.',
  'plaintext-refused': 'A recipient would get a readable copy without your consent; nothing was sent.',
  'invalid-recipient': 'A recipient has no account at this server; nothing was sent.',
  'resync-required': 'The mailbox changed too much; reloading.',
  'unsupported-version': 'The server speaks another protocol version; this page may be out of date. Reload it.',
  internal: 'The server failed. Try again later.',
};

function waitText(seconds) {
  return seconds > 60 ? `${Math.ceil(seconds / 60)} minutes` : `${seconds || 'a few'} seconds`;
}

/** describe turns any error into one sentence for the UI. */
export function describe(err, context = '') {
  if (err instanceof SexmapError) {
    switch (err.kind) {
      case 'key-changed':
        return "The server's key has changed. This is either a reinstalled server or an attack; check with your administrator.";
      case 'network':
        return 'The server cannot be reached. Check your connection and try again.';
      case 'kdf':
        return `The server asks for unsafe key-derivation settings; refusing. (${err.message})`;
      case 'bad-response':
        return 'The server sent an answer that does not check out (damaged or tampered with).';
      case 'counter-exhausted':
        return 'The session is worn out; sign in again.';
      default:
        break;
    }
    if (err.status === 403) return context === 'login' ? 'Wrong address or passphrase.' : 'Access refused.';
    if (err.rateLimited) return `Too many attempts from your network. Try again in ${waitText(err.retryAfter)}.`;
    if (err.status === 429) return `Too many failed sign-ins. Try again in ${waitText(err.retryAfter)}.`;
    if (err.status === 503) return 'The server is busy. Try again in a moment.';
    if (err.status === 401) return 'The session ended. Sign in again.';
    return `The server refused the request (${err.status} ${err.code}).`;
  }
  if (err instanceof XMAPError) {
    if (context === 'signup' && err.code === 'conflict') return 'This address already has an account (or was created with another key).';
    const base = XMAP_TEXT[err.code] || XMAP_TEXT.internal;
    return err.reason && ['not-found', 'conflict', 'denied', 'invalid-recipient', 'plaintext-refused'].includes(err.code)
      ? `${base} (${err.reason})` : base;
  }
  if (err instanceof UnsealError) return 'Your private key does not open with this passphrase.';
  if (err instanceof MissingKeysError) return `No encryption key is known for ${err.addresses.join(', ')}. Allow a readable copy for them, or remove them.`;
  if (err instanceof PGPError || err instanceof ClientError) return err.message.charAt(0).toUpperCase() + err.message.slice(1) + '.';
  if (err && err.name === 'AbortError') return 'Cancelled.';
  // An unexpected failure: its kind goes to the browser console for a bug report (error
  // texts of this code and its libraries never hold message content or keys).
  console.error('CryptoMail: unexpected error:', err && err.name, err && err.message);
  return 'Something went wrong. Try again.';
}
