// A small, strict XML 1.0 reader for XMAP documents (docs/XMAP.md "Documents"), with
// namespaces. It is the same code in the browser and under Node's test runner, so what the
// tests check is what the browser runs. What it accepts: an optional XML declaration first
// (version 1.0, encoding UTF-8 if named), comments, CDATA sections, the five predefined
// entities and character references, elements and attributes with namespace prefixes. What
// it refuses, as XMAP does: DTDs and every other declaration, processing instructions other
// than the declaration, text outside the root, undeclared prefixes, malformed markup.

export class XMLError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'XMLError';
    this.code = code; // an XMAP error code: bad-request, limit-exceeded, too-large
  }
}

const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';

// NameStartChar and NameChar of XML 1.0 fifth edition (§2.3), as regular expressions.
const NAME_START = 'A-Z_a-z:\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD';
const NAME_CHAR = NAME_START + '\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040';
const NAME_RE = new RegExp(`[${NAME_START}][${NAME_CHAR}]*`, 'y');
// Characters XML 1.0 does not allow at all (§2.2), lone surrogates included.
const BAD_CHAR = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const ENTITIES = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };

/**
 * parseXML reads a document and returns its root element as
 * { name, ns, prefix, attrs: [{name, ns, value}], kids: [...], text: string, line }.
 * Text of an element is the concatenation of its character data (CDATA included), with line
 * ends normalized to LF. Comments are dropped.
 *
 * limits: { maxDepth, maxTokens, maxAttributes, maxAttributeSize }.
 */
export function parseXML(src, limits = {}) {
  const maxDepth = limits.maxDepth ?? 64;
  const maxTokens = limits.maxTokens ?? Infinity;
  const maxAttributes = limits.maxAttributes ?? Infinity;
  const maxAttributeSize = limits.maxAttributeSize ?? Infinity;

  if (src.charCodeAt(0) === 0xfeff) throw new XMLError('bad-request', 'line 1: a byte-order mark is not allowed');
  const bad = BAD_CHAR.exec(src);
  if (bad) throw new XMLError('bad-request', `line ${lineAt(src, bad.index)}: a character XML does not allow`);
  // §2.11: line ends become LF before parsing.
  if (src.includes('\r')) src = src.replace(/\r\n?/g, '\n');

  let pos = 0;
  let line = 1;
  let tokens = 0;
  let root = null;
  let ended = false;
  const stack = [];
  const fail = (msg, code = 'bad-request') => {
    throw new XMLError(code, `line ${line}: ${msg}`);
  };
  const count = () => {
    if (++tokens > maxTokens) throw new XMLError('limit-exceeded', `more than ${maxTokens} XML tokens`);
  };
  const advance = (to) => {
    for (let i = src.indexOf('\n', pos); i !== -1 && i < to; i = src.indexOf('\n', i + 1)) line++;
    pos = to;
  };
  const readName = () => {
    NAME_RE.lastIndex = pos;
    const m = NAME_RE.exec(src);
    if (!m) fail('malformed XML: expected a name');
    pos += m[0].length;
    return m[0];
  };
  const skipSpace = () => {
    const start = pos;
    while (pos < src.length) {
      const c = src.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a) {
        if (c === 0x0a) line++;
        pos++;
      } else break;
    }
    return pos > start;
  };
  const addText = (text) => {
    if (stack.length === 0) {
      if (!/^[ \t\n]*$/.test(text)) fail('text outside the root element');
      return;
    }
    const top = stack[stack.length - 1];
    top.parts.push(text);
  };

  // The XML declaration, if present, must come first.
  if (src.startsWith('<?xml') && /^<\?xml[ \t\n]/.test(src)) {
    const end = src.indexOf('?>');
    if (end < 0) fail('malformed XML declaration');
    const decl = src.slice(5, end);
    const m = /^[ \t\n]+version[ \t\n]*=[ \t\n]*(["'])1\.0\1(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(["'])(yes|no)\4)?[ \t\n]*$/.exec(decl);
    if (!m) fail('malformed XML declaration');
    if (m[3] && m[3].toUpperCase() !== 'UTF-8') fail(`encoding ${JSON.stringify(m[3])} is not UTF-8`);
    count();
    advance(end + 2);
  }

  while (pos < src.length) {
    const lt = src.indexOf('<', pos);
    if (lt !== pos) {
      const end = lt < 0 ? src.length : lt;
      const raw = src.slice(pos, end);
      if (raw.includes(']]>')) fail("']]>' is not allowed in text");
      count();
      addText(decodeRefs(raw, fail));
      advance(end);
      continue;
    }
    if (src.startsWith('<!--', pos)) {
      const end = src.indexOf('-->', pos + 4);
      if (end < 0) fail('unterminated comment');
      if (src.slice(pos + 4, end).includes('--') || src[end - 1] === '-') fail("'--' inside a comment");
      count();
      advance(end + 3);
      continue;
    }
    if (src.startsWith('<![CDATA[', pos)) {
      if (stack.length === 0) fail('CDATA outside the root element');
      const end = src.indexOf(']]>', pos + 9);
      if (end < 0) fail('unterminated CDATA section');
      count();
      addText(src.slice(pos + 9, end));
      advance(end + 3);
      continue;
    }
    if (src.startsWith('<!', pos)) fail('DTDs and declarations are not allowed');
    if (src.startsWith('<?', pos)) fail('processing instructions are not allowed');
    if (src.startsWith('</', pos)) {
      pos += 2;
      const name = readName();
      skipSpace();
      if (src[pos] !== '>') fail('malformed end tag');
      pos++;
      const top = stack.pop();
      if (!top || top.qname !== name) fail(`end tag </${name}> does not match`);
      count();
      top.node.text = top.parts.join('');
      if (stack.length === 0) ended = true;
      continue;
    }
    // A start tag.
    pos++;
    const startLine = line;
    const qname = readName();
    const rawAttrs = [];
    for (;;) {
      const sp = skipSpace();
      if (src.startsWith('/>', pos) || src[pos] === '>') break;
      if (!sp) fail('malformed start tag');
      const an = readName();
      skipSpace();
      if (src[pos] !== '=') fail('attribute without a value');
      pos++;
      skipSpace();
      const q = src[pos];
      if (q !== '"' && q !== "'") fail('attribute value without quotes');
      const end = src.indexOf(q, pos + 1);
      if (end < 0) fail('unterminated attribute value');
      const rawv = src.slice(pos + 1, end);
      if (rawv.includes('<')) fail("'<' in an attribute value");
      advance(end + 1);
      // Attribute-value normalization (§3.3.3): literal white space becomes a space.
      const value = decodeRefs(rawv.replace(/[\t\n]/g, ' '), fail);
      if (rawAttrs.some((a) => a.qname === an)) fail(`duplicate attribute ${JSON.stringify(an)}`);
      if (value.length > maxAttributeSize) fail(`attribute ${JSON.stringify(an)} larger than ${maxAttributeSize} bytes`, 'too-large');
      rawAttrs.push({ qname: an, value });
    }
    const selfClosing = src[pos] === '/';
    pos += selfClosing ? 2 : 1;
    count();
    if (ended) fail('more than one root element');
    if (stack.length >= maxDepth) throw new XMLError('limit-exceeded', `line ${startLine}: elements nested deeper than ${maxDepth}`);

    // Namespaces: declarations on this element apply to it and its attributes.
    const parentScope = stack.length ? stack[stack.length - 1].scope : { xml: XML_NS, xmlns: XMLNS_NS };
    let scope = parentScope;
    const attrs = [];
    for (const a of rawAttrs) {
      if (a.qname === 'xmlns') {
        scope = scope === parentScope ? { ...parentScope } : scope;
        scope[''] = a.value;
      } else if (a.qname.startsWith('xmlns:')) {
        const p = a.qname.slice(6);
        if (p === 'xmlns' || (p === 'xml' && a.value !== XML_NS) || a.value === '') fail(`bad namespace declaration ${a.qname}`);
        scope = scope === parentScope ? { ...parentScope } : scope;
        scope[p] = a.value;
      }
    }
    for (const a of rawAttrs) {
      if (a.qname === 'xmlns' || a.qname.startsWith('xmlns:')) continue;
      const [p, local] = splitQName(a.qname, fail);
      if (p !== '' && !(p in scope)) fail(`undeclared prefix ${JSON.stringify(p)}`);
      const ns = p === '' ? '' : scope[p];
      if (attrs.some((b) => b.name === local && b.ns === ns)) fail(`duplicate attribute ${JSON.stringify(local)}`);
      attrs.push({ name: local, ns, value: a.value });
    }
    if (attrs.length > maxAttributes) throw new XMLError('limit-exceeded', `line ${startLine}: <${qname}> has more than ${maxAttributes} attributes`);
    const [prefix, local] = splitQName(qname, fail);
    if (prefix !== '' && !(prefix in scope)) fail(`undeclared prefix ${JSON.stringify(prefix)}`);
    const node = { name: local, ns: scope[prefix] || '', prefix, attrs, kids: [], text: '', line: startLine };
    if (root === null) root = node;
    else stack[stack.length - 1].node.kids.push(node);
    if (selfClosing) {
      if (stack.length === 0) ended = true;
    } else {
      stack.push({ node, qname, scope, parts: [] });
    }
  }
  if (stack.length) fail(`unexpected end of document inside <${stack[stack.length - 1].qname}>`);
  if (!root) throw new XMLError('bad-request', 'empty document');
  return root;
}

function splitQName(q, fail) {
  const i = q.indexOf(':');
  if (i < 0) return ['', q];
  const p = q.slice(0, i);
  const l = q.slice(i + 1);
  if (p === '' || l === '' || l.includes(':')) fail(`malformed name ${JSON.stringify(q)}`);
  return [p, l];
}

function lineAt(s, i) {
  let n = 1;
  for (let j = s.indexOf('\n'); j !== -1 && j < i; j = s.indexOf('\n', j + 1)) n++;
  return n;
}

function decodeRefs(s, fail) {
  if (!s.includes('&')) return s;
  return s.replace(/&([^;&]*);?/g, (m, ref) => {
    if (!m.endsWith(';')) fail("'&' not starting a reference");
    if (ref in ENTITIES) return ENTITIES[ref];
    let cp = NaN;
    if (/^#x[0-9A-Fa-f]{1,6}$/.test(ref)) cp = parseInt(ref.slice(2), 16);
    else if (/^#[0-9]{1,7}$/.test(ref)) cp = parseInt(ref.slice(1), 10);
    else fail(`unknown entity &${ref.slice(0, 20)};`);
    if (!(cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
          (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff))) {
      fail('a character reference to a character XML does not allow');
    }
    return String.fromCodePoint(cp);
  });
}
