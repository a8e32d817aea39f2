// The Web Worker that runs Argon2id (and the HKDF after it), so that the page stays
// responsive during the seconds a derivation takes and can show its progress. It receives
// { passphrase: bytes (NFC UTF-8), salt, params: { t, m, p } } once, answers with
// { progress } messages and then { keys } or { error }, and is terminated after.
import { deriveKeysAsync } from './lib/sexmap.js';

self.onmessage = async (ev) => {
  const { passphrase, salt, params } = ev.data;
  let last = -1;
  try {
    const keys = await deriveKeysAsync(passphrase, salt, params, (p) => {
      const pct = Math.floor(p * 100);
      if (pct !== last) {
        last = pct;
        self.postMessage({ progress: p });
      }
    });
    passphrase.fill(0);
    self.postMessage({ keys }, [keys.loginPriv.buffer, keys.sealKey.buffer]);
  } catch (err) {
    passphrase.fill(0);
    self.postMessage({ error: err && err.message ? err.message : 'the key derivation failed' });
  }
};
