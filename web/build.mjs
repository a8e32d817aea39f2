// Builds web/dist from web/src with the pinned esbuild: the same sources give the same bytes
// (the Go test TestBundleMatchesSources rebuilds and compares). Asset names carry a hash of
// their content, so they can be cached for ever; the two HTML shells are not hashed.
//
//   node build.mjs [--out DIR]     (default: dist)
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outArg = process.argv.indexOf('--out');
const out = path.resolve(outArg > 0 ? process.argv[outArg + 1] : path.join(here, 'dist'));
const src = path.join(here, 'src');

const common = {
  bundle: true,
  minify: true,
  write: false,
  platform: 'browser',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  legalComments: 'eof',
  charset: 'utf8',
  // Paths in the output are relative to web/, so the build does not depend on where the
  // checkout lives.
  absWorkingDir: here,
  logLevel: 'warning',
};

function hashed(name, ext, bytes) {
  const h = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  return `assets/${name}-${h}.${ext}`;
}

async function bundle(entry, format, define = {}) {
  const r = await esbuild.build({ ...common, entryPoints: [path.join(src, entry)], format, define, outdir: 'out' });
  const files = {};
  for (const f of r.outputFiles) files[path.extname(f.path).slice(1)] = Buffer.from(f.contents);
  return files;
}

const assets = new Map();

// The KDF worker first: the app needs its name.
const worker = await bundle('kdf-worker.js', 'iife');
const workerName = hashed('kdf-worker', 'js', worker.js);
assets.set(workerName, worker.js);

const app = await bundle('ui/main.js', 'esm', { __KDF_WORKER_URL__: JSON.stringify('/' + workerName) });
const appJS = hashed('app', 'js', app.js);
assets.set(appJS, app.js);
const css = await esbuild.build({ ...common, entryPoints: [path.join(src, 'ui', 'app.css')], outdir: 'out', bundle: true });
const appCSS = hashed('app', 'css', Buffer.from(css.outputFiles[0].contents));
assets.set(appCSS, Buffer.from(css.outputFiles[0].contents));
const frameCSS = await esbuild.build({ ...common, entryPoints: [path.join(src, 'ui', 'mailframe.css')], outdir: 'out', bundle: true });
const mailCSS = hashed('mailframe', 'css', Buffer.from(frameCSS.outputFiles[0].contents));
assets.set(mailCSS, Buffer.from(frameCSS.outputFiles[0].contents));

const icon = readFileSync(path.join(src, 'ui', 'icon.svg'));
const iconName = hashed('icon', 'svg', icon);
assets.set(iconName, icon);

const fill = (file) => readFileSync(path.join(src, 'ui', file), 'utf8')
  .replaceAll('%APP_JS%', '/' + appJS)
  .replaceAll('%APP_CSS%', '/' + appCSS)
  .replaceAll('%MAILFRAME_CSS%', '/' + mailCSS)
  .replaceAll('%ICON%', '/' + iconName);
assets.set('index.html', Buffer.from(fill('index.html')));
assets.set('mailframe.html', Buffer.from(fill('mailframe.html')));

rmSync(out, { recursive: true, force: true });
mkdirSync(path.join(out, 'assets'), { recursive: true });
for (const [name, bytes] of [...assets].sort(([a], [b]) => (a < b ? -1 : 1))) {
  writeFileSync(path.join(out, name), bytes);
}
const listing = readdirSync(path.join(out, 'assets')).length;
console.log(`built ${assets.size} files (${listing} assets) into ${path.relative(process.cwd(), out) || '.'}`);
