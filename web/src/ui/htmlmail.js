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
const CSS_URL = /url\(\s*(['"]?)([^)'"]*)\1\s*\)/gi;
const CSS_IMPORT = /@import[^;]*;?/gi;

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
  const cssURLs = (css) => css.replace(CSS_URL, (m, q, url) => {
    if (/^\s*data:image\//i.test(url)) return m;
    if (REMOTE.test(url)) {
      remote = true;
      return allowRemote ? m : 'url()';
    }
    return 'url()';
  });
  purifier ||= DOMPurify(window);
  const purify = purifier;
  purify.removeAllHooks();
  purify.addHook('uponSanitizeElement', (node, data) => {
    if (data.tagName === 'style' && node.textContent) {
      // Style sheets: no @import ever; remote url() only when allowed.
      node.textContent = cssURLs(node.textContent.replace(CSS_IMPORT, ''));
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
      const clean = cssURLs(st);
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
