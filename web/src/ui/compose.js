// The composer: recipients with a per-recipient end-to-end indicator, subject, text and
// attachments. A recipient with no known key gets mail only after the user ticks "send a
// readable copy" for that address (docs/CLIENT.md "Sending").
import { h, replace, formatSize, icon } from './dom.js';
import { describe } from './errors.js';
import { parseAddressList } from '../lib/mime.js';
import { validAddress, LIMITS } from '../lib/xmap.js';
import { MissingKeysError } from '../lib/client.js';
import { asciiLower } from '../lib/bytes.js';

const MAX_ATTACHMENTS_BYTES = 14 << 20; // base64 and encryption must still fit 20 MiB

export class Composer {
  constructor(session, init, { onClose, onSent }) {
    this.s = session;
    this.init = init;
    this.onClose = onClose;
    this.onSent = onSent;
    this.attachments = [...(init.attachments || [])];
    this.allowed = new Set();
    this.status = new Map(); // lower-cased address → 'key' | 'none' | 'invalid'
    this.lookupTimer = null;
    this.build();
  }

  build() {
    const input = (name, value, testid, label) => h('input', { name, value: value || '', autocomplete: 'off', spellcheck: 'false', 'data-testid': testid, 'aria-label': label, oninput: () => this.scheduleLookup(), onblur: () => this.lookup() });
    this.to = input('to', this.init.to, 'compose-to', 'To');
    this.cc = input('cc', this.init.cc, 'compose-cc', 'Cc');
    this.bcc = input('bcc', this.init.bcc, 'compose-bcc', 'Bcc');
    this.subject = h('input', { name: 'subject', value: this.init.subject || '', 'data-testid': 'compose-subject', 'aria-label': 'Subject' });
    this.text = h('textarea', { name: 'text', rows: 14, 'data-testid': 'compose-text', 'aria-label': 'Message' });
    this.text.value = this.init.text || '';
    this.file = h('input', { type: 'file', multiple: true, 'data-testid': 'compose-attach', 'aria-label': 'Attach files', onchange: () => this.addFiles() });
    this.attList = h('ul', { class: 'att-list', 'data-testid': 'compose-attachments' });
    this.rcptList = h('ul', { class: 'rcpts', 'aria-live': 'polite', 'data-testid': 'compose-recipients' });
    this.err = h('p', { class: 'error', role: 'alert', hidden: true, 'data-testid': 'compose-error' });
    this.sendBtn = h('button', { type: 'submit', class: 'primary', 'data-testid': 'compose-send', title: 'Send (Ctrl+Enter)' }, 'Send');
    const bccRow = h('label', { class: 'row-field', hidden: !this.init.bcc }, h('span', { text: 'Bcc' }), this.bcc);
    this.el = h('section', { class: 'composer', role: 'dialog', 'aria-label': 'New message', 'data-testid': 'composer' },
      h('form', {
        onsubmit: (ev) => {
          ev.preventDefault();
          this.send();
        },
        onkeydown: (ev) => {
          if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
            ev.preventDefault();
            this.send();
          } else if (ev.key === 'Escape') {
            ev.preventDefault();
            this.close(true);
          }
        },
      },
      h('header', { class: 'composer-head' }, h('h2', { text: this.init.subject ? this.init.subject : 'New message' }),
        h('button', { type: 'button', class: 'link', 'aria-label': 'Close', onclick: () => this.close(true) }, '✕')),
      h('label', { class: 'row-field' }, h('span', { text: 'To' }), this.to),
      h('label', { class: 'row-field' }, h('span', { text: 'Cc' }), this.cc,
        h('button', { type: 'button', class: 'link small', onclick: (ev) => { bccRow.hidden = false; ev.target.remove(); this.bcc.focus(); } }, 'Bcc')),
      bccRow,
      this.rcptList,
      h('label', { class: 'row-field' }, h('span', { text: 'Subject' }), this.subject),
      this.text,
      h('div', { class: 'att-bar' }, h('label', { class: 'button' }, 'Attach files', this.file), this.attList),
      this.err,
      h('div', { class: 'actions' }, this.sendBtn, h('button', { type: 'button', onclick: () => this.close(true) }, 'Discard'))));
    this.renderAttachments();
    if (this.to.value) this.lookup();
  }

  focus() {
    (this.to.value ? this.text : this.to).focus();
    if (this.to.value) this.text.setSelectionRange(0, 0);
  }

  close(ask) {
    const dirty = this.text.value !== (this.init.text || '') || this.attachments.length !== (this.init.attachments || []).length;
    if (ask && dirty && !window.confirm('Discard this message?')) return;
    clearTimeout(this.lookupTimer);
    this.el.remove();
    this.onClose();
  }

  async addFiles() {
    for (const f of this.file.files) {
      const data = new Uint8Array(await f.arrayBuffer());
      this.attachments.push({ filename: f.name, contentType: f.type || '', data });
    }
    this.file.value = '';
    this.renderAttachments();
  }

  renderAttachments() {
    const total = this.attachments.reduce((n, a) => n + a.data.length, 0);
    replace(this.attList, this.attachments.map((a, i) => h('li', {},
      h('span', { text: `${a.filename} (${formatSize(a.data.length)})` }),
      h('button', { type: 'button', class: 'link small', 'aria-label': `Remove ${a.filename}`, onclick: () => { this.attachments.splice(i, 1); this.renderAttachments(); } }, 'remove'))),
    total > MAX_ATTACHMENTS_BYTES ? h('li', { class: 'error', text: `Attachments of ${formatSize(total)} are too large to send (at most ${formatSize(MAX_ATTACHMENTS_BYTES)}).` }) : null);
  }

  addresses() {
    const out = [];
    for (const el of [this.to, this.cc, this.bcc]) {
      for (const a of parseAddressList(el.value)) out.push(a.address || a.name);
    }
    return out.filter((a, i) => a && out.findIndex((b) => asciiLower(b) === asciiLower(a)) === i);
  }

  scheduleLookup() {
    clearTimeout(this.lookupTimer);
    this.lookupTimer = setTimeout(() => this.lookup(), 500);
  }

  async lookup() {
    clearTimeout(this.lookupTimer);
    const all = this.addresses();
    const valid = all.filter((a) => validAddress(a));
    try {
      const res = valid.length ? await this.s.recipientKeys(valid.slice(0, LIMITS.maxRecipients)) : [];
      for (const r of res) this.status.set(asciiLower(r.address), r.key ? 'key' : 'none');
    } catch (err) {
      this.showError(describe(err));
    }
    for (const a of all) if (!validAddress(a)) this.status.set(asciiLower(a), 'invalid');
    this.renderRecipients(all);
  }

  renderRecipients(all = this.addresses()) {
    replace(this.rcptList, all.map((a) => {
      const k = asciiLower(a);
      const st = this.status.get(k);
      if (st === 'key') {
        return h('li', { class: 'rcpt ok', 'data-testid': 'rcpt-status', 'data-address': a, 'data-e2e': 'true' }, icon('lock'), h('span', { text: ` ${a}: end-to-end encrypted` }));
      }
      if (st === 'invalid') {
        return h('li', { class: 'rcpt bad', 'data-testid': 'rcpt-status', 'data-address': a }, h('span', { text: `✖ ${a}: not an address mail can be sent to` }));
      }
      if (st === 'none') {
        const box = h('input', {
          type: 'checkbox', checked: this.allowed.has(k), 'data-testid': 'allow-plaintext',
          onchange: (ev) => {
            if (ev.target.checked) this.allowed.add(k);
            else this.allowed.delete(k);
          },
        });
        return h('li', { class: 'rcpt warn', 'data-testid': 'rcpt-status', 'data-address': a, 'data-e2e': 'false' },
          icon('warn'), h('span', { text: ` ${a}: no key known, not end-to-end encrypted` }),
          h('label', { class: 'check' }, box, ' send a copy their provider can read'));
      }
      return h('li', { class: 'rcpt', 'data-testid': 'rcpt-status', 'data-address': a }, h('span', { text: `${a}: checking…` }));
    }));
  }

  showError(msg) {
    this.err.hidden = !msg;
    this.err.textContent = msg || '';
  }

  async send() {
    this.showError('');
    await this.lookup();
    const total = this.attachments.reduce((n, a) => n + a.data.length, 0);
    if (total > MAX_ATTACHMENTS_BYTES) {
      this.showError('The attachments are too large to send.');
      return;
    }
    if (this.addresses().length === 0) {
      this.showError('Add at least one recipient.');
      return;
    }
    this.sendBtn.disabled = true;
    this.sendBtn.textContent = 'Encrypting and sending…';
    try {
      const report = await this.s.sendMail({
        to: [this.to.value], cc: [this.cc.value], bcc: [this.bcc.value],
        subject: this.subject.value, text: this.text.value, attachments: this.attachments,
        allowPlaintext: [...this.allowed], inReplyTo: this.init.inReplyTo, references: this.init.references,
      });
      if (this.init.answered) {
        await this.s.one('update-flags', { action: 'add', flags: ['\\Answered'], ids: [this.init.answered] }).catch(() => {});
      }
      this.close(false);
      this.onSent(report);
    } catch (err) {
      this.sendBtn.disabled = false;
      this.sendBtn.textContent = 'Send';
      if (err instanceof MissingKeysError) this.renderRecipients();
      this.showError(describe(err));
    }
  }
}
