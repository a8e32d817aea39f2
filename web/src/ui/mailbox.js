// The mailbox: folders with unread counts, a message list paged from decrypted summaries, the
// reader, and the actions on messages. New mail arrives through a long-poll (XMAP wait) and
// the delta it announces (changes).
import { h, replace, linkified, formatSize, formatWhen, icon } from './dom.js';
import { describe } from './errors.js';
import { sanitize, mailFrame } from './htmlmail.js';
import { Composer } from './compose.js';
import { SexmapError } from '../lib/sexmap.js';
import { formatAddress } from '../lib/mime.js';

const PAGE = 50;
const WAIT_SECONDS = 60;
const ROLE_LABEL = { inbox: 'Inbox', sent: 'Sent', drafts: 'Drafts', trash: 'Trash', junk: 'Junk' };

export class Mailbox {
  constructor(root, session, { onSignOut }) {
    this.root = root;
    this.s = session;
    this.onSignOut = onSignOut;
    this.folders = [];
    this.folderId = '';
    this.messages = []; // listed messages of the current folder, newest first
    this.nextCursor = '';
    this.selected = '';
    this.open = null; // the decrypted message on screen
    this.filter = '';
    this.state = '';
    this.abort = new AbortController();
    this.objectURLs = [];
    this.allowRemote = new Set();
    this.closed = false;
    this.onKey = (ev) => this.keydown(ev);
  }

  // ---- layout -------------------------------------------------------------------------

  start() {
    this.search = h('input', {
      type: 'search', class: 'search', placeholder: 'Filter loaded messages  ( / )', 'aria-label': 'Filter messages', 'data-testid': 'filter',
      oninput: () => {
        this.filter = this.search.value.trim().toLowerCase();
        this.renderList();
      },
    });
    this.banner = h('div', { class: 'banner', role: 'alert', hidden: true, 'data-testid': 'banner' });
    this.toast = h('div', { class: 'toast', role: 'status', 'aria-live': 'polite', hidden: true, 'data-testid': 'toast' });
    this.folderNav = h('nav', { class: 'folders', 'aria-label': 'Folders', 'data-testid': 'folders' });
    this.listEl = h('ul', { class: 'messages', role: 'listbox', 'aria-label': 'Messages', 'data-testid': 'message-list' });
    this.more = h('button', { type: 'button', class: 'more', hidden: true, 'data-testid': 'load-more', onclick: () => this.loadMore() }, 'Load more');
    this.listHead = h('div', { class: 'list-head' });
    this.reader = h('article', { class: 'reader', 'aria-label': 'Message', 'data-testid': 'reader' }, h('p', { class: 'empty', text: 'Select a message to read it.' }));
    this.layout = h('div', { class: 'layout', 'data-view': 'list' },
      this.folderNav,
      h('section', { class: 'list', 'aria-label': 'Message list' }, this.listHead, this.listEl, this.more),
      this.reader);
    replace(this.root, h('div', { class: 'app' },
      h('header', { class: 'topbar' },
        h('span', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true', text: '✉' }), h('span', { class: 'brand-name', text: 'CryptoMail' })),
        this.search,
        h('button', { type: 'button', class: 'primary', 'data-testid': 'compose', title: 'Compose (c)', onclick: () => this.compose() }, 'Compose'),
        h('details', { class: 'account' },
          h('summary', { 'data-testid': 'account-menu', title: this.s.address }, h('span', { class: 'who', text: this.s.address })),
          h('div', { class: 'menu' },
            h('p', { class: 'fp' }, 'Key ', h('code', { text: this.s.fingerprint.replace(/(.{4})/g, '$1 ').trim() })),
            h('button', { type: 'button', 'data-testid': 'change-passphrase', onclick: (ev) => { ev.target.closest('details').open = false; this.passphraseDialog(); } }, 'Change passphrase'),
            h('button', { type: 'button', 'data-testid': 'shortcuts', onclick: (ev) => { ev.target.closest('details').open = false; this.help(); } }, 'Keyboard shortcuts'),
            h('button', { type: 'button', 'data-testid': 'signout', onclick: () => this.signOut() }, 'Sign out')))),
      this.banner,
      this.layout,
      this.toast));
    document.addEventListener('keydown', this.onKey);
    this.init();
  }

  async init() {
    try {
      await this.refreshFolders();
      const inbox = this.folders.find((f) => f.role === 'inbox') || this.folders[0];
      await this.showFolder(inbox.id);
      // Changes are followed from the state the first listing was read at, so nothing that
      // arrives in between is missed (XMAP.md "Delta sync and push").
      this.state = this.pageState;
      this.watch();
    } catch (err) {
      this.fail(err);
    }
  }

  setView(v) {
    this.layout.dataset.view = v;
  }

  error(msg) {
    this.banner.hidden = false;
    replace(this.banner, h('span', { text: msg }), h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => { this.banner.hidden = true; } }, '✕'));
  }

  fail(err) {
    if (this.closed) return;
    if (err instanceof SexmapError && (err.kind === 'key-changed' || err.status === 403)) {
      this.signOut(describe(err));
      return;
    }
    this.error(describe(err));
  }

  notify(msg) {
    this.toast.hidden = false;
    this.toast.textContent = msg;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      this.toast.hidden = true;
    }, 6000);
  }

  async signOut(message = '') {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    document.removeEventListener('keydown', this.onKey);
    this.revokeURLs();
    const s = this.s;
    this.s = null;
    this.messages = [];
    this.open = null;
    replace(this.root);
    try {
      await s.logout();
    } catch {
      // The keys are forgotten either way; the server ends the session at its expiry.
    }
    this.onSignOut(message);
  }

  // ---- folders ------------------------------------------------------------------------

  folder(id = this.folderId) {
    return this.folders.find((f) => f.id === id);
  }

  role(role) {
    return this.folders.find((f) => f.role === role);
  }

  async refreshFolders() {
    this.folders = await this.s.listFolders();
    this.renderFolders();
  }

  renderFolders() {
    replace(this.folderNav, h('ul', {}, this.folders.map((f) => h('li', {},
      h('button', {
        type: 'button',
        class: f.id === this.folderId ? 'folder current' : 'folder',
        'aria-current': f.id === this.folderId ? 'true' : null,
        'data-testid': `folder-${f.role || f.name}`,
        onclick: () => this.showFolder(f.id),
      }, h('span', { class: 'fname', text: ROLE_LABEL[f.role] || f.name }),
      f.unseen ? h('span', { class: 'count', 'aria-label': `${f.unseen} unread`, text: String(f.unseen) }) : null)))));
  }

  async showFolder(id) {
    this.folderId = id;
    this.selected = '';
    this.messages = [];
    this.nextCursor = '';
    this.renderFolders();
    this.renderListHead();
    replace(this.listEl, h('li', { class: 'loading', text: 'Decrypting…' }));
    this.clearReader();
    this.setView('list');
    try {
      const page = await this.s.list({ id }, { limit: PAGE });
      if (id !== this.folderId) return;
      this.messages = page.messages;
      this.nextCursor = page.nextCursor;
      this.pageState = page.state;
      this.renderList();
    } catch (err) {
      this.fail(err);
    }
  }

  renderListHead() {
    const f = this.folder();
    const trash = f && f.role === 'trash';
    replace(this.listHead,
      h('h2', { text: f ? ROLE_LABEL[f.role] || f.name : '' }),
      trash ? h('button', { type: 'button', class: 'danger small', 'data-testid': 'empty-trash', onclick: () => this.emptyTrash() }, 'Empty Trash') : null);
  }

  async loadMore() {
    if (!this.nextCursor) return;
    this.more.disabled = true;
    try {
      const page = await this.s.list({ id: this.folderId }, { limit: PAGE, cursor: this.nextCursor });
      const have = new Set(this.messages.map((m) => m.id));
      this.messages.push(...page.messages.filter((m) => !have.has(m.id)));
      this.nextCursor = page.nextCursor;
      this.renderList();
    } catch (err) {
      this.fail(err);
    } finally {
      this.more.disabled = false;
    }
  }

  // ---- the list -----------------------------------------------------------------------

  visible() {
    if (!this.filter) return this.messages;
    return this.messages.filter((m) => {
      const s = m.summary;
      if (!s) return false;
      return [s.from, s.subject, s.snippet, ...s.to].some((x) => x.toLowerCase().includes(this.filter));
    });
  }

  renderList() {
    const list = this.visible();
    const inSent = (this.folder() || {}).role === 'sent';
    if (list.length === 0) {
      replace(this.listEl, h('li', { class: 'empty', text: this.filter ? 'No loaded message matches.' : 'No messages.' }));
    } else {
      replace(this.listEl, list.map((m) => {
        const s = m.summary;
        const unread = !m.flags.includes('\\Seen');
        const flagged = m.flags.includes('\\Flagged');
        // A line another user wrote is their word: marked until the message is opened,
        // then the From the opening checked is shown instead (kept in memory only).
        const checked = this.checkedByID && this.checkedByID.get(m.id);
        const unverified = s && m.summaryUnverified && !checked;
        const who = s ? (inSent ? `To: ${s.to.join(', ')}` : (checked ? checked.from : s.from)) : '';
        return h('li', {
          class: ['row', unread ? 'unread' : '', m.id === this.selected ? 'selected' : ''].join(' ').trim(),
          role: 'option',
          tabindex: '0',
          'aria-selected': m.id === this.selected ? 'true' : 'false',
          'data-id': m.id,
          'data-testid': 'message-row',
          onclick: () => this.select(m.id),
          onkeydown: (ev) => {
            if (ev.key === 'Enter') this.select(m.id);
          },
        },
        h('span', { class: 'from' },
          unverified ? h('span', {
            class: 'unverified', 'data-testid': 'summary-unverified', title: 'Unverified: this line was written by the sender. Open the message to check it.',
            'aria-label': 'Unverified: written by the sender', text: '? ',
          }) : null,
          checked && ['other-signer', 'bad'].includes(checked.status) ? h('span', {
            class: 'unverified', 'data-testid': 'summary-forged', title: 'Opened: not signed by the sender shown.', 'aria-label': 'Not signed by the sender shown', text: '✖ ',
          }) : null,
          who || '(unknown sender)'),
        h('span', { class: 'when', text: formatWhen(s && s.date ? s.date : new Date(m.received)) }),
        h('span', { class: 'subject' },
          flagged ? h('span', { class: 'flag', 'aria-label': 'Flagged', text: '★ ' }) : null,
          s ? (s.subject || '(no subject)') : h('em', { text: `cannot be decrypted: ${m.summaryError || 'no summary'}` })),
        s && s.hasAttachments ? h('span', { class: 'clip', title: 'Has attachments' }, icon('clip', 'Has attachments')) : null,
        h('span', { class: 'snippet', text: s ? s.snippet : '' }));
      }));
    }
    this.more.hidden = !this.nextCursor;
  }

  // ---- reading ------------------------------------------------------------------------

  clearReader() {
    this.open = null;
    this.revokeURLs();
    replace(this.reader, h('p', { class: 'empty', text: 'Select a message to read it.' }));
  }

  revokeURLs() {
    for (const u of this.objectURLs) URL.revokeObjectURL(u);
    this.objectURLs = [];
  }

  async select(id) {
    this.selected = id;
    this.renderList();
    this.setView('message');
    replace(this.reader, h('p', { class: 'loading', text: 'Decrypting…' }));
    const listed = this.messages.find((m) => m.id === id);
    try {
      const msg = await this.s.read(id);
      if (this.selected !== id || this.closed) return;
      this.open = msg;
      // What the opened message shows, and what its signature proved, replace the sender's
      // list line (summary-by="sender"); in memory only, like everything decrypted.
      // By id, so it outlives a reload of the folder's page (a message's content never
      // changes for its id); gone with this mailbox at sign-out.
      (this.checkedByID ||= new Map()).set(id, { from: msg.from, status: msg.signature.status });
      this.renderMessage();
      if (listed && listed.summaryUnverified) this.renderList();
      if (listed && !listed.flags.includes('\\Seen')) {
        await this.s.one('update-flags', { action: 'add', flags: ['\\Seen'], ids: [id] });
        listed.flags = [...listed.flags, '\\Seen'];
        msg.flags = listed.flags;
        this.renderList();
        this.refreshFolders().catch(() => {});
      }
    } catch (err) {
      if (this.selected === id) replace(this.reader, h('p', { class: 'error', role: 'alert', text: describe(err) }));
    }
  }

  renderMessage() {
    const m = this.open;
    this.revokeURLs();
    const badges = [];
    if (m.encrypted) badges.push(h('span', { class: 'badge ok', 'data-testid': 'badge-e2e' }, icon('lock'), ' End-to-end encrypted'));
    else badges.push(h('span', { class: 'badge warn', 'data-testid': 'badge-not-e2e', title: 'Encrypted by the server on arrival; the sender sent it readable.' }, icon('warn'), ' Not end-to-end encrypted'));
    const sg = m.signature;
    // Who signed is always said: the signer's address (as the server's key lookup gave it)
    // and fingerprint. Only a signature by the shown From's key is "verified".
    const who = sg.signerAddress ? `${sg.signerAddress} (key ${sg.signer})` : `key ${sg.signer}`;
    const sig = {
      verified: ['ok', `✔ Signature verified: signed by ${who}${sg.reason ? ` (note: ${sg.reason})` : ''}`],
      'other-signer': ['bad', `✖ Signed by ${sg.signerAddress}, not by the sender shown (key ${sg.signer})`],
      'unknown-key': ['neutral', `Signed by a key this client does not know (key ${sg.signer})`],
      bad: ['bad', `✖ Bad signature${sg.reason ? `: ${sg.reason}` : ''} (${who})`],
    }[sg.status];
    if (sig) badges.push(h('span', { class: `badge ${sig[0]}`, 'data-testid': `badge-sig-${sg.status}`, text: sig[1] }));
    if (!m.storageEncrypted) badges.push(h('span', { class: 'badge bad', text: 'The server stored this message readable' }));

    const cidURLs = new Map();
    const atts = m.attachments.map((a) => {
      const url = URL.createObjectURL(new Blob([a.data], { type: safeType(a.contentType) }));
      this.objectURLs.push(url);
      if (a.contentId) cidURLs.set(a.contentId, url);
      return { ...a, url };
    });
    const listedAtts = atts.filter((a) => !(a.inline && cidURLs.has(a.contentId) && m.html));

    let body;
    if (m.html) {
      const allow = this.allowRemote.has(m.id);
      const { html, remote } = sanitize(m.html, { allowRemote: allow, cidURLs });
      body = h('div', { class: 'htmlbody' },
        remote && !allow ? h('div', { class: 'notice remote', 'data-testid': 'remote-blocked' },
          h('span', { text: 'Remote content in this message is blocked: loading it would tell the sender when and where you read it.' }),
          h('button', { type: 'button', 'data-testid': 'allow-remote', onclick: () => { this.allowRemote.add(m.id); this.renderMessage(); } }, 'Load remote content')) : null,
        mailFrame(html, allow),
        m.text ? h('details', { class: 'alt' }, h('summary', { text: 'Plain-text version' }), h('pre', { class: 'mailtext' }, linkified(m.text))) : null);
    } else {
      body = h('pre', { class: 'mailtext', 'data-testid': 'mail-text' }, linkified(m.text || ''));
    }
    const moveSelect = h('select', {
      'aria-label': 'Move to folder',
      'data-testid': 'move-select',
      onchange: (ev) => {
        if (ev.target.value) this.move(m.id, ev.target.value);
      },
    }, h('option', { value: '', text: 'Move to…' }), this.folders.filter((f) => f.id !== m.folderId).map((f) => h('option', { value: f.id, text: ROLE_LABEL[f.role] || f.name })));
    const flagged = m.flags.includes('\\Flagged');
    const addrs = (list) => list.map(formatAddress).join(', ');
    replace(this.reader,
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', class: 'back', onclick: () => this.setView('list'), 'aria-label': 'Back to the list' }, '←'),
        h('button', { type: 'button', 'data-testid': 'reply', title: 'Reply (r)', onclick: () => this.reply(false) }, 'Reply'),
        h('button', { type: 'button', 'data-testid': 'reply-all', title: 'Reply all (a)', onclick: () => this.reply(true) }, 'Reply all'),
        h('button', { type: 'button', 'data-testid': 'forward', title: 'Forward (f)', onclick: () => this.forward() }, 'Forward'),
        h('button', { type: 'button', 'data-testid': 'flag', 'aria-pressed': flagged ? 'true' : 'false', onclick: () => this.setFlag(m.id, '\\Flagged', !flagged) }, flagged ? 'Unflag' : 'Flag'),
        h('button', { type: 'button', 'data-testid': 'mark-unread', onclick: () => this.setFlag(m.id, '\\Seen', false) }, 'Mark unread'),
        moveSelect,
        h('button', { type: 'button', class: 'danger', 'data-testid': 'delete', title: 'Delete (#)', onclick: () => this.remove(m.id) }, 'Delete')),
      h('header', { class: 'msghead' },
        h('h2', { class: 'msgsubject', 'data-testid': 'msg-subject', text: m.subject || '(no subject)' }),
        h('div', { class: 'badges' }, badges),
        h('dl', { class: 'addrs' },
          h('dt', { text: 'From' }), h('dd', { 'data-testid': 'msg-from', text: m.from }),
          m.to.length ? [h('dt', { text: 'To' }), h('dd', { text: addrs(m.to) })] : null,
          m.cc.length ? [h('dt', { text: 'Cc' }), h('dd', { text: addrs(m.cc) })] : null,
          h('dt', { text: 'Date' }), h('dd', { text: (m.date || new Date(m.received)).toLocaleString() }))),
      listedAtts.length ? h('ul', { class: 'attachments', 'aria-label': 'Attachments', 'data-testid': 'attachments' }, listedAtts.map((a) => h('li', {},
        h('a', { href: a.url, download: safeName(a.filename || 'attachment'), 'data-testid': 'attachment', title: `Download ${a.filename}` },
          h('span', { class: 'aname', text: a.filename || '(unnamed)' }),
          h('span', { class: 'asize', text: `${a.contentType}, ${formatSize(a.data.length)}` }))))) : null,
      body);
  }

  // ---- actions ------------------------------------------------------------------------

  async setFlag(id, flag, on) {
    try {
      await this.s.one('update-flags', { action: on ? 'add' : 'remove', flags: [flag], ids: [id] });
      const m = this.messages.find((x) => x.id === id);
      if (m) m.flags = on ? [...new Set([...m.flags, flag])] : m.flags.filter((f) => f !== flag);
      if (this.open && this.open.id === id) {
        this.open.flags = m ? m.flags : this.open.flags;
        this.renderMessage();
      }
      this.renderList();
      await this.refreshFolders();
    } catch (err) {
      this.fail(err);
    }
  }

  dropFromList(id) {
    const i = this.messages.findIndex((m) => m.id === id);
    if (i >= 0) this.messages.splice(i, 1);
    if (this.selected === id) {
      const next = this.messages[i] || this.messages[i - 1];
      this.selected = '';
      this.clearReader();
      this.renderList();
      if (next) this.select(next.id);
      else this.setView('list');
    } else {
      this.renderList();
    }
  }

  async move(id, folderId) {
    try {
      await this.s.one('move', { folder: { id: folderId }, ids: [id] });
      this.notify(`Moved to ${ROLE_LABEL[(this.folder(folderId) || {}).role] || (this.folder(folderId) || {}).name}.`);
      this.dropFromList(id);
      await this.refreshFolders();
    } catch (err) {
      this.fail(err);
    }
  }

  async remove(id) {
    const inTrash = (this.folder() || {}).role === 'trash';
    try {
      await this.s.one('delete', { ids: [id] });
      if (inTrash) {
        // In Trash, delete marks \Deleted and expunge destroys it now: the user asked for it gone.
        await this.s.one('expunge', { folder: { id: this.folderId } });
        this.notify('Deleted for good.');
      } else {
        this.notify('Moved to Trash.');
      }
      this.dropFromList(id);
      await this.refreshFolders();
    } catch (err) {
      this.fail(err);
    }
  }

  async emptyTrash() {
    const trash = this.role('trash');
    if (!trash || !window.confirm('Delete every message in Trash for good?')) return;
    try {
      const n = await this.s.emptyTrash({ id: trash.id });
      this.notify(`${n} message${n === 1 ? '' : 's'} deleted for good.`);
      await this.refreshFolders();
      await this.showFolder(trash.id);
    } catch (err) {
      this.fail(err);
    }
  }

  // ---- composing ----------------------------------------------------------------------

  compose(init = {}) {
    if (this.composer) {
      this.composer.focus();
      return;
    }
    this.composer = new Composer(this.s, init, {
      onClose: () => {
        this.composer = null;
      },
      onSent: (report) => {
        const plain = report.plaintext.length ? ` (readable copy to ${report.plaintext.join(', ')})` : '';
        this.notify(`Sent${plain}.`);
        this.refreshFolders().catch(() => {});
        if ((this.folder() || {}).role === 'sent') this.showFolder(this.folderId);
      },
    });
    document.body.appendChild(this.composer.el);
    this.composer.focus();
  }

  quoted(m) {
    const when = (m.date || new Date(m.received)).toUTCString();
    const text = m.text || '';
    return `\n\nOn ${when}, ${m.from} wrote:\n${text.replace(/\r\n/g, '\n').split('\n').map((l) => `> ${l}`).join('\n')}`;
  }

  reply(all) {
    const m = this.open;
    if (!m) return;
    const me = this.s.address.toLowerCase();
    const primary = (m.replyTo.length ? m.replyTo : m.fromList).filter((a) => a.address);
    const to = primary.map(formatAddress);
    const cc = all ? [...m.to, ...m.cc].filter((a) => a.address && a.address.toLowerCase() !== me && !primary.some((p) => p.address.toLowerCase() === a.address.toLowerCase())).map(formatAddress) : [];
    const subject = /^re:/i.test(m.subject) ? m.subject : `Re: ${m.subject}`;
    this.compose({
      to: to.join(', '), cc: cc.join(', '), subject, text: this.quoted(m),
      inReplyTo: m.messageId, references: [...m.references, m.messageId].filter(Boolean),
      answered: m.id,
    });
  }

  forward() {
    const m = this.open;
    if (!m) return;
    const subject = /^fwd?:/i.test(m.subject) ? m.subject : `Fwd: ${m.subject}`;
    const head = `\n\n---------- Forwarded message ----------\nFrom: ${m.from}\nDate: ${(m.date || new Date(m.received)).toUTCString()}\nSubject: ${m.subject}\nTo: ${m.to.map(formatAddress).join(', ')}\n\n`;
    this.compose({
      subject, text: head + (m.text || '').replace(/\r\n/g, '\n'),
      attachments: m.attachments.map((a) => ({ filename: a.filename || 'attachment', contentType: a.contentType, data: a.data })),
    });
  }

  // ---- passphrase -----------------------------------------------------------------------

  passphraseDialog() {
    const p1 = h('input', { type: 'password', autocomplete: 'new-password', 'data-testid': 'new-passphrase' });
    const p2 = h('input', { type: 'password', autocomplete: 'new-password', 'data-testid': 'new-passphrase2' });
    const msg = h('p', { class: 'error', role: 'alert', hidden: true });
    const bar = h('progress', { max: 100, value: 0, hidden: true });
    const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'change-passphrase-submit' }, 'Change passphrase');
    const dlg = h('dialog', { class: 'dialog', 'aria-label': 'Change passphrase' },
      h('form', {
        method: 'dialog',
        onsubmit: async (ev) => {
          ev.preventDefault();
          msg.hidden = true;
          if (p1.value.length < 8 || p1.value !== p2.value) {
            msg.hidden = false;
            msg.textContent = p1.value !== p2.value ? 'The two passphrases differ.' : 'Choose at least 8 characters.';
            return;
          }
          submit.disabled = true;
          bar.hidden = false;
          try {
            await this.s.changePassphrase(p1.value, (p) => { bar.value = Math.round(p * 100); });
            p1.value = '';
            p2.value = '';
            dlg.close();
            dlg.remove();
            this.notify('Passphrase changed. Use the new one from now on.');
          } catch (err) {
            msg.hidden = false;
            msg.textContent = describe(err);
            submit.disabled = false;
            bar.hidden = true;
          }
        },
      },
      h('h2', { text: 'Change passphrase' }),
      h('p', { text: 'Your private key is sealed again under the new passphrase. You stay signed in here; every other session of your account is signed out.' }),
      h('label', { class: 'field' }, h('span', { text: 'New passphrase' }), p1),
      h('label', { class: 'field' }, h('span', { text: 'New passphrase again' }), p2),
      bar, msg,
      h('div', { class: 'actions' }, submit, h('button', { type: 'button', onclick: () => { dlg.close(); dlg.remove(); } }, 'Cancel'))));
    document.body.appendChild(dlg);
    dlg.showModal();
    p1.focus();
  }

  help() {
    const dlg = h('dialog', { class: 'dialog', 'aria-label': 'Keyboard shortcuts' },
      h('h2', { text: 'Keyboard shortcuts' }),
      h('dl', { class: 'keys' }, [['j / k', 'next / previous message'], ['r', 'reply'], ['a', 'reply all'], ['f', 'forward'], ['c', 'compose'], ['/', 'filter the list'], ['#', 'delete'], ['u', 'mark unread'], ['Esc', 'close']].map(([k, v]) => [h('dt', {}, h('kbd', { text: k })), h('dd', { text: v })])),
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => { dlg.close(); dlg.remove(); } }, 'Close')));
    document.body.appendChild(dlg);
    dlg.showModal();
  }

  keydown(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || this.closed) return;
    const t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
      if (ev.key === 'Escape' && t === this.search) {
        this.search.value = '';
        this.filter = '';
        this.renderList();
        this.search.blur();
      }
      return;
    }
    if (document.querySelector('dialog[open]') || this.composer) return;
    const list = this.visible();
    const i = list.findIndex((m) => m.id === this.selected);
    const go = (j) => {
      if (j >= 0 && j < list.length) {
        this.select(list[j].id);
        const row = this.listEl.querySelector(`[data-id="${CSS.escape(list[j].id)}"]`);
        if (row) row.scrollIntoView({ block: 'nearest' });
      }
    };
    switch (ev.key) {
      case 'j': go(i + 1); break;
      case 'k': go(i < 0 ? 0 : i - 1); break;
      case 'r': this.reply(false); break;
      case 'a': this.reply(true); break;
      case 'f': this.forward(); break;
      case 'c': this.compose(); break;
      case '#': if (this.selected) this.remove(this.selected); break;
      case 'u': if (this.selected) this.setFlag(this.selected, '\\Seen', false); break;
      case '/': this.search.focus(); break;
      case '?': this.help(); break;
      case 'Escape': this.setView('list'); break;
      default: return;
    }
    ev.preventDefault();
  }

  // ---- live updates -------------------------------------------------------------------

  async watch() {
    const signal = this.abort.signal;
    let backoff = 1;
    if (!this.state) {
      try {
        this.state = await this.s.state();
      } catch (err) {
        this.fail(err);
      }
    }
    while (!this.closed) {
      try {
        const w = await this.s.one('wait', { since: this.state || '0', timeout: WAIT_SECONDS }, { signal });
        backoff = 1;
        if (w.changed) await this.sync(w.state);
      } catch (err) {
        if (this.closed || signal.aborted) return;
        if (err instanceof SexmapError && (err.kind === 'key-changed' || err.status === 403)) {
          this.fail(err);
          return;
        }
        // A network hiccup or a restarting server: try again, slower each time.
        await new Promise((r) => setTimeout(r, backoff * 1000));
        backoff = Math.min(backoff * 2, 60);
      }
    }
  }

  // sync applies what changed since the last state: new and updated messages are fetched
  // (summaries only), destroyed ones dropped, and the folder counts refreshed.
  async sync(current) {
    const ch = await this.s.changesSince(this.state);
    if (!ch) {
      this.state = current;
      await this.refreshFolders();
      await this.showFolder(this.folderId);
      return;
    }
    this.state = ch.state;
    const msgIDs = (list) => list.filter((o) => o.kind === 'message').map((o) => o.id);
    const created = msgIDs(ch.created);
    const updated = msgIDs(ch.updated);
    const destroyed = new Set(msgIDs(ch.destroyed));
    const folderId = this.folderId;
    const fetched = created.length + updated.length ? await this.s.summaries([...created, ...updated]) : [];
    const inbox = this.role('inbox');
    let fresh = 0;
    let from = '';
    for (const m of fetched) {
      if (created.includes(m.id) && inbox && m.folderId === inbox.id && !m.flags.includes('\\Seen')) {
        fresh++;
        from = m.summary ? m.summary.from : '';
      }
    }
    // The list may have been replaced while the summaries were fetched (another folder shown,
    // or a fresh page that already holds some of these): merge into what is there now, and
    // leave a folder that is no longer shown to its own listing.
    if (folderId === this.folderId) this.merge(fetched, destroyed);
    await this.refreshFolders();
    if (fresh) this.notify(fresh === 1 ? `New message${from ? ` from ${from}` : ''}.` : `${fresh} new messages.`);
  }

  // merge puts fetched summaries into the list shown (updating the ones it has) and drops
  // the destroyed ones and those now in another folder.
  merge(fetched, destroyed) {
    const have = new Map(this.messages.map((m) => [m.id, m]));
    for (const m of fetched) {
      if (m.folderId !== this.folderId) {
        if (have.has(m.id)) destroyed.add(m.id);
        continue;
      }
      if (have.has(m.id)) Object.assign(have.get(m.id), { flags: m.flags, folderId: m.folderId });
      else {
        this.messages.push(m);
        have.set(m.id, m);
      }
    }
    for (const id of destroyed) {
      const i = this.messages.findIndex((m) => m.id === id);
      if (i >= 0) this.messages.splice(i, 1);
      if (this.selected === id) {
        this.selected = '';
        this.clearReader();
      }
    }
    this.messages.sort((a, b) => Date.parse(b.received) - Date.parse(a.received) || compareIDs(b.id, a.id));
    this.renderList();
  }
}

// compareIDs orders ids as the reference storage's decimal numbers, else as strings (ids are
// opaque to clients; this only keeps equal-time messages in a stable order).
function compareIDs(a, b) {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

// Downloads get an inert type for anything that could run in this origin if opened.
function safeType(t) {
  return /^(text\/html|image\/svg\+xml|application\/xhtml\+xml|text\/xml|application\/xml)$/i.test(t) || !/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/i.test(t)
    ? 'application/octet-stream' : t;
}

function safeName(name) {
  return name.replace(/[\\/:*?"<>|\p{Cc}]/gu, '_').slice(0, 200) || 'attachment';
}

