// Helpers for the browser tests: Chromium through playwright-core, a log of every request
// the pages make (requests to another origin are refused and recorded), and a minimal LMTP
// client to deliver mail "from outside".
import net from 'node:net';
import { chromium } from 'playwright-core';

export const env = {
  url: process.env.CM_URL,
  lmtp: process.env.CM_LMTP,
  users: JSON.parse(process.env.CM_USERS || '[]'),
  chromium: process.env.CM_CHROMIUM || '/usr/bin/chromium',
  screenshots: process.env.CM_SCREENSHOTS || '',
  attachment: process.env.CM_ATTACHMENT,
  result: process.env.CM_RESULT,
  // A server listening off loopback without TLS, which must not serve the web client.
  exposed: process.env.CM_EXPOSED_URL,
};

// The flags this machine's Chromium needs: no sandbox (root in CI), no GPU, and none of
// the background connections a closed network refuses.
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];

export function launch() {
  return chromium.launch({ executablePath: env.chromium, headless: true, args: CHROMIUM_ARGS });
}

/**
 * RequestLog records every request of the contexts it watches. Requests to another origin
 * are aborted before they leave the browser and recorded in `foreign`, with the phase the
 * test was in.
 */
export class RequestLog {
  constructor(origin) {
    this.origin = origin;
    this.all = [];
    this.foreign = [];
    this.phase = 'default';
    this.consoleProblems = [];
    this.consoleErrors = [];
    this.failedResponses = [];
    this.pageErrors = [];
  }

  async watch(context, name) {
    await context.route('**/*', (route) => {
      const u = route.request().url();
      this.all.push(u);
      if (this.isForeign(u)) {
        this.foreign.push({ url: u, phase: this.phase, context: name });
        return route.abort('blockedbyclient');
      }
      return route.continue();
    });
    context.on('request', (req) => {
      const u = req.url();
      if (this.isForeign(u) && !this.foreign.some((f) => f.url === u)) this.foreign.push({ url: u, phase: this.phase, context: name, unrouted: true });
    });
    context.on('page', (page) => this.watchPage(page, name));
  }

  watchPage(page, name) {
    page.on('console', (msg) => {
      const text = msg.text();
      if (msg.type() === 'error') this.consoleErrors.push(`${name}: ${text}`);
      // Refused resources and policy violations are what this log is for; failed loads of
      // refused requests (403 on a wrong passphrase, blocked remote images) are expected.
      if (/Content Security Policy|Refused to|Trusted Type|TrustedHTML/i.test(text)) this.consoleProblems.push({ phase: this.phase, text: `${name}: ${text}` });
    });
    page.on('pageerror', (err) => this.pageErrors.push(`${name}: ${err.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) this.failedResponses.push(`${name}: ${r.status()} ${r.request().method()} ${r.url()}`);
    });
  }

  isForeign(u) {
    if (u.startsWith('data:') || u.startsWith('about:')) return false;
    try {
      return new URL(u).origin !== this.origin;
    } catch {
      return true;
    }
  }
}

// ---- LMTP ------------------------------------------------------------------------------

/** lmtpSend delivers one message to rcpts and returns each recipient's reply line. */
export function lmtpSend(addr, from, rcpts, message) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, host);
    let buf = '';
    const waiting = [];
    const replies = [];
    const pump = () => {
      for (;;) {
        const m = /^(\d{3})([ -])(.*)\r\n/m.exec(buf);
        if (!m) return;
        const lines = [];
        let end = -1;
        const re = /^(\d{3})([ -])(.*)\r\n/gm;
        let x;
        while ((x = re.exec(buf))) {
          lines.push(x[0]);
          if (x[2] === ' ') {
            end = re.lastIndex;
            break;
          }
        }
        if (end < 0) return;
        buf = buf.slice(end);
        const reply = lines.join('').trim();
        if (waiting.length) waiting.shift()(reply);
        else replies.push(reply);
      }
    };
    const next = () => new Promise((res) => {
      if (replies.length) res(replies.shift());
      else waiting.push(res);
    });
    const expect = async (code) => {
      const r = await next();
      if (!r.startsWith(code)) throw new Error(`LMTP: want ${code}, got ${r}`);
      return r;
    };
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      buf += d;
      pump();
    });
    sock.on('error', reject);
    (async () => {
      await expect('220');
      sock.write('LHLO test.example\r\n');
      await expect('250');
      sock.write(`MAIL FROM:<${from}>\r\n`);
      await expect('250');
      for (const r of rcpts) {
        sock.write(`RCPT TO:<${r}>\r\n`);
        await expect('250');
      }
      sock.write('DATA\r\n');
      await expect('354');
      const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
      sock.write(Buffer.from(body.endsWith('\r\n') ? body : body + '\r\n', 'utf8'));
      sock.write('.\r\n');
      const out = [];
      for (let i = 0; i < rcpts.length; i++) out.push(await expect('250'));
      sock.write('QUIT\r\n');
      sock.end();
      resolve(out);
    })().catch((err) => {
      sock.destroy();
      reject(err);
    });
  });
}

/** rfc5322Date writes the current time as a Date header value. */
export function mailDate(d = new Date()) {
  return d.toUTCString().replace('GMT', '+0000');
}
