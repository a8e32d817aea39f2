// HTML mail, shown safely: sanitised by DOMPurify, then written into a sandboxed iframe whose
// document (/mailframe.html) the server serves with its own Content-Security-Policy: no
// script at all, no form submission, and images only from data: and blob: URLs, unless the
// user allows remote content, when /mailframe.html?remote=1 adds http: and https: images.
// The sanitiser also strips remote references while they are blocked, so the CSP is a second
// wall, not the only one. The frame is same-origin without allow-scripts, so the page can
// write into it and nothing in it can run.
import DOMPurify from 'dompurify';
import { h } from './dom.js';

const REMOTE = /^\s*(https?:)?\/\//i;
const URL_ATTRS = ['src', 'srcset', 'background', 'poster', 'lowsrc', 'dynsrc', 'data'];

// CSS is judged by the browser's own CSS parser, never by a pattern on the text a sender
// wrote: escapes (u\72 l(...), \75 rl(...)), comments and odd spacing are resolved by the
// parser exactly as the frame would resolve them, and what reaches the frame is the
// parser's canonical serialization, not the sender's text. A value that can load something
// names one of these functions once serialized (image-set strings are URLs too).
const LOADS = /(?:^|[^a-z0-9_-])(?:url|image-set|-webkit-image-set|src|image|cross-fade|element)\(/i;
const BASE = 'http://mailframe.invalid/';

// cssStrings returns the strings of a serialized CSS value (url("...") and bare strings),
// unescaped. Serialized values quote every string with " and escape only ", \ and
// control characters, so this reads the browser's output, not a sender's.
function cssStrings(value) {
  const out = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== '"') continue;
    let str = '';
    for (i++; i < value.length && value[i] !== '"'; i++) {
      if (value[i] !== '\\') {
        str += value[i];
        continue;
      }
      const hex = /^[0-9a-f]{1,6} ?/i.exec(value.slice(i + 1, i + 8));
      if (hex) {
        str += String.fromCodePoint(Math.min(parseInt(hex[0], 16), 0x10ffff));
        i += hex[0].length;
      } else {
        str += value[++i] || '';
      }
    }
    out.push(str);
  }
  return out;
}

// urlKind says what a URL of the mail's CSS would load, as the URL parser resolves it in
// the frame: 'data' (a data: image, kept), 'remote' (another host), or 'other' (this
// server, or anything else: dropped).
function urlKind(u) {
  if (/^[\u0000-\u0020]*data:image\//i.test(u)) return 'data';
  let url;
  try {
    url = new URL(u, BASE);
  } catch {
    return 'other';
  }
  if ((url.protocol === 'http:' || url.protocol === 'https:') && url.origin !== new URL(BASE).origin) return 'remote';
  return 'other';
}

/**
 * cssFilter makes the functions that clean a style sheet and a style attribute: every
 * declaration that would load something is removed unless all it loads are data: images,
 * or remote URLs while remote content is allowed. onRemote() is called for each remote
 * reference met, kept or not, so the "remote content" notice appears either way.
 */
function cssFilter(allowRemote, onRemote) {
  // cleanStyle rebuilds a declaration block from the parser's longhands, keeping those that
  // load nothing, or only what may load. Rebuilt rather than edited: custom properties,
  // var()/env()/attr() (whose values the browser keeps unparsed, escapes and all, until
  // use) and anything still holding a backslash are left out, so what is kept is exactly
  // what was judged.
  const cleanStyle = (style) => {
    const decls = [];
    for (const prop of [...style]) {
      if (prop.startsWith('--')) continue;
      const value = style.getPropertyValue(prop);
      if (!value || value.includes('\\') || /(?:^|[^a-z0-9_-])(?:var|env|attr)\(/i.test(value)) continue;
      if (LOADS.test(value)) {
        const kinds = cssStrings(value).map(urlKind);
        if (kinds.includes('remote')) onRemote();
        if (!kinds.length || !kinds.every((k) => k === 'data' || (k === 'remote' && allowRemote))) continue;
      }
      decls.push(`${prop}: ${value}${style.getPropertyPriority(prop) ? ' !important' : ''};`);
    }
    style.cssText = decls.join(' ');
  };
  const cleanRules = (rules) => {
    for (let i = rules.length - 1; i >= 0; i--) {
      const r = rules[i];
      if (r.style) cleanStyle(r.style);
      if (r.cssRules) cleanRules(r.cssRules);
      // A rule with neither (@counter-style symbols, ...) is kept only if it loads nothing.
      if (!r.style && !r.cssRules && LOADS.test(r.cssText)) {
        if (cssStrings(r.cssText).map(urlKind).includes('remote')) onRemote();
        r.parentRule ? r.parentRule.deleteRule(i) : r.parentStyleSheet.deleteRule(i);
      }
    }
  };
  return {
    // A <style> element's text: parsed into a sheet of its own (which never loads
    // anything, and ignores @import), cleaned, and written back serialized.
    sheet(text) {
      const sheet = new CSSStyleSheet();
      try {
        sheet.replaceSync(text);
      } catch {
        return '';
      }
      cleanRules(sheet.cssRules);
      return [...sheet.cssRules].map((r) => r.cssText).join('\n');
    },
    // A style attribute: parsed by a detached element of this document (CSSOM, which
    // the page's style-src policy does not stop), cleaned, serialized.
    attribute(text) {
      const el = document.createElement('div');
      el.style.cssText = text;
      cleanStyle(el.style);
      return el.style.cssText;
    },
  };
}

/**
 * sanitize returns { html, remote } for a message's HTML: html safe to place in the mail
 * frame, remote whether the message refers to remote content. cid: references become the
 * object URLs of the message's inline parts (cidURLs: Map from Content-ID to URL).
 */
// One DOMPurify instance for the page: under the app's Trusted Types policy, the name
// "dompurify" can be registered once only.
let purifier = null;

export function sanitize(dirty, { allowRemote, cidURLs }) {
  let remote = false;
  // CSS references: data: images stay, remote ones only when allowed, anything else (which
  // would resolve against this server) goes.
  const css = cssFilter(allowRemote, () => {
    remote = true;
  });
  purifier ||= DOMPurify(window);
  const purify = purifier;
  purify.removeAllHooks();
  purify.addHook('uponSanitizeElement', (node, data) => {
    if (data.tagName === 'style' && node.textContent) {
      // Style sheets: no @import ever; remote references only when allowed.
      node.textContent = css.sheet(node.textContent);
    }
  });
  purify.addHook('afterSanitizeAttributes', (node) => {
    for (const attr of URL_ATTRS) {
      if (!node.hasAttribute(attr)) continue;
      const v = node.getAttribute(attr);
      if (/^\s*cid:/i.test(v)) {
        const url = cidURLs.get(v.trim().slice(4).replace(/^<|>$/g, ''));
        if (url) node.setAttribute(attr, url);
        else node.removeAttribute(attr);
      } else if (REMOTE.test(v) || (attr === 'srcset' && /https?:/i.test(v))) {
        remote = true;
        if (!allowRemote) node.removeAttribute(attr);
      } else if (!/^\s*data:image\//i.test(v)) {
        // Relative references would resolve against this server: a message has no business
        // there, so only remote, data: and inline (cid:) images are kept.
        node.removeAttribute(attr);
      }
    }
    if (node.hasAttribute('style')) {
      const st = node.getAttribute('style');
      const clean = css.attribute(st);
      if (clean !== st) node.setAttribute('style', clean);
    }
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
  const html = purify.sanitize(dirty, {
    FORCE_BODY: true,
    FORBID_TAGS: ['form', 'input', 'button', 'textarea', 'select', 'option', 'link', 'meta', 'base', 'iframe', 'frame', 'object', 'embed', 'audio', 'video', 'source', 'track', 'svg', 'math'],
    FORBID_ATTR: ['action', 'formaction', 'ping'],
    ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto|cid|blob):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
    ADD_ATTR: ['target'],
  });
  return { html, remote };
}

/**
 * mailFrame builds the sandboxed iframe for a message's HTML and fills it when it loads.
 * onResize is called when the content's height changes.
 */
export function mailFrame(html, allowRemote) {
  const frame = h('iframe', {
    class: 'mailframe',
    title: 'Message content',
    sandbox: 'allow-same-origin allow-popups allow-popups-to-escape-sandbox',
    referrerpolicy: 'no-referrer',
    src: allowRemote ? '/mailframe.html?remote=1' : '/mailframe.html',
  });
  let observer = null;
  const fill = () => {
    const doc = frame.contentDocument;
    // Only the served frame document, under its own policy: never the initial about:blank,
    // which inherits the app's.
    if (!doc || !doc.body || !doc.location || doc.location.pathname !== '/mailframe.html') return;
    frame.removeEventListener('load', fill);
    // A string written into a document that cannot run script: no element ever exists in
    // the app's own document, so nothing can load with the app's privileges.
    doc.body.innerHTML = html;
    const fit = () => {
      frame.style.height = `${Math.min(Math.max(doc.documentElement.scrollHeight, 80), 40000)}px`;
    };
    fit();
    if (observer) observer.disconnect();
    observer = new ResizeObserver(fit);
    observer.observe(doc.body);
  };
  frame.addEventListener('load', fill);
  return frame;
}
