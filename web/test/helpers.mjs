// Shared test helpers: where the repository's test data is. The Go test in package web runs
// these tests from a copy of web/ and says where the repository is with CRYPTOMAIL_ROOT.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = process.env.CRYPTOMAIL_ROOT ||
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function repoFile(...parts) {
  return readFileSync(path.join(ROOT, ...parts));
}

export function repoJSON(...parts) {
  return JSON.parse(repoFile(...parts).toString('utf8'));
}
