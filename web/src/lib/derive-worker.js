// deriveInWorker runs the passphrase derivation in the KDF Web Worker (src/kdf-worker.js,
// built to a file of its own), reporting progress; the worker is ended when it answers.
import { passphraseBytes } from './sexmap.js';

/* global __KDF_WORKER_URL__ */

// The app's Content-Security-Policy requires Trusted Types: the worker's URL passes through a
// policy that admits this one URL and nothing else.
let policy = null;

function workerURL() {
  const tt = globalThis.trustedTypes;
  if (!tt || !tt.createPolicy) return __KDF_WORKER_URL__;
  policy ||= tt.createPolicy('cryptomail', {
    createScriptURL: (u) => {
      if (u !== __KDF_WORKER_URL__) throw new TypeError('not the key-derivation worker');
      return u;
    },
  });
  return policy.createScriptURL(__KDF_WORKER_URL__);
}

export function deriveInWorker(passphrase, salt, params, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerURL(), { name: 'kdf' });
    const pw = passphraseBytes(passphrase);
    w.onmessage = (ev) => {
      const d = ev.data;
      if (d.progress !== undefined) {
        onProgress(d.progress);
        return;
      }
      w.terminate();
      if (d.keys) resolve(d.keys);
      else reject(new Error(d.error || 'the key derivation failed'));
    };
    w.onerror = (ev) => {
      w.terminate();
      reject(new Error(ev.message || 'the key derivation worker failed'));
    };
    w.postMessage({ passphrase: pw, salt, params }, [pw.buffer]);
  });
}
