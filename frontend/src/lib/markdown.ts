// A small Markdown renderer for model output. Safety comes from construction,
// not from sanitising afterwards: every piece of input text goes through
// escapeHtml, and the only markup in the output is the fixed set of tags this
// file writes itself. Links keep http(s) and mailto targets only, and images
// are never turned into <img> (that would make the browser fetch from wherever
// the model pointed); they render as links.

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      default:
        return '&#39;';
    }
  });
}

/** A link target the renderer will emit, or null for anything else (javascript:, data:, relative, ...). */
export function safeUrl(raw: string): string | null {
  const url = raw.trim();
  // Whitespace or control characters inside a URL are how filters get fooled; refuse them.
  for (const ch of url) {
    const c = ch.charCodeAt(0);
    if (c <= 0x20 || c === 0x7f || /\s/.test(ch)) return null;
  }
  if (/^https?:\/\/[^/?#]/i.test(url) || /^mailto:[^\s@]+@[^\s@]+$/i.test(url)) return url;
  return null;
}

function link(href: string, inner: string): string {
  return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer nofollow">${inner}</a>`;
}

const punct = /[!-/:-@[-`{-~]/;

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[\p{L}\p{N}]/u.test(c);
}

/**
 * Finds the closing delimiter for an emphasis opener at `from`, skipping code
 * spans and escapes; -1 when there is none. The closer must follow a non-space
 * character, as in CommonMark's right-flanking rule.
 */
function findCloser(s: string, from: number, delim: string): number {
  for (let j = from; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      j++;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(s.slice(j))![0];
      const end = s.indexOf(run, j + run.length);
      if (end !== -1) j = end + run.length - 1;
      continue;
    }
    if (s.startsWith(delim, j) && j > from && !/\s/.test(s[j - 1]!)) {
      // `*` inside `**` is not our closer: skip longer runs of the same character.
      if (delim.length === 1 && s[j + 1] === delim) {
        j++;
        continue;
      }
      if (delim === '_' && isWordChar(s[j + 1])) continue;
      return j;
    }
  }
  return -1;
}

/** Renders inline Markdown: code spans, emphasis, strikethrough, links, autolinks, escapes. */
export function renderInline(s: string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length && punct.test(s[i + 1]!)) {
      out += escapeHtml(s[i + 1]!);
      i += 2;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(s.slice(i))![0];
      const end = s.indexOf(run, i + run.length);
      if (end !== -1) {
        let code = s.slice(i + run.length, end);
        if (code.length > 1 && code.startsWith(' ') && code.endsWith(' ') && code.trim() !== '') code = code.slice(1, -1);
        out += `<code>${escapeHtml(code)}</code>`;
        i = end + run.length;
        continue;
      }
      out += escapeHtml(run);
      i += run.length;
      continue;
    }
    if (c === '*' || c === '_' || c === '~') {
      const double = s[i + 1] === c;
      const delim = double ? c + c : c;
      const canOpen = !/\s/.test(s[i + delim.length] ?? ' ') && !(c === '_' && isWordChar(s[i - 1]));
      if (canOpen && (c !== '~' || double)) {
        const close = findCloser(s, i + delim.length, delim);
        if (close !== -1) {
          const inner = renderInline(s.slice(i + delim.length, close));
          const tag = c === '~' ? 'del' : double ? 'strong' : 'em';
          out += `<${tag}>${inner}</${tag}>`;
          i = close + delim.length;
          continue;
        }
      }
      out += escapeHtml(delim);
      i += delim.length;
      continue;
    }
    if (c === '[' || (c === '!' && s[i + 1] === '[')) {
      const m = matchLink(s, c === '!' ? i + 1 : i);
      if (m) {
        const href = safeUrl(m.url);
        // Images become links to their target: the dashboard never loads a remote resource.
        const text = c === '!' ? escapeHtml(m.text || m.url) : renderInline(m.text);
        out += href ? link(href, text) : text;
        i = m.end;
        continue;
      }
    }
    if (c === '<') {
      const m = /^<([a-z][a-z0-9+.-]{1,31}:[^\s<>]*)>/i.exec(s.slice(i));
      const href = m ? safeUrl(m[1]!) : null;
      if (m && href) {
        out += link(href, escapeHtml(m[1]!));
        i += m[0].length;
        continue;
      }
    }
    if ((c === 'h' || c === 'H') && !isWordChar(s[i - 1])) {
      const m = /^https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"*_~]/i.exec(s.slice(i));
      if (m && safeUrl(m[0])) {
        out += link(m[0], escapeHtml(m[0]));
        i += m[0].length;
        continue;
      }
    }
    if (c === '\n') {
      out += '<br>';
      i++;
      continue;
    }
    out += escapeHtml(c);
    i++;
  }
  return out;
}

/** `[text](url "title")` starting at `start` (the `[`). */
function matchLink(s: string, start: number): { text: string; url: string; end: number } | null {
  let depth = 0;
  let j = start;
  for (; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      j++;
    } else if (c === '[') {
      depth++;
    } else if (c === ']') {
      depth--;
      if (depth === 0) break;
    }
  }
  if (j >= s.length || s[j + 1] !== '(') return null;
  const m = /^\(\s*<?([^\s<>()]*)>?(?:\s+("[^"]*"|'[^']*'))?\s*\)/.exec(s.slice(j + 1));
  if (!m) return null;
  return { text: s.slice(start + 1, j), url: m[1]!, end: j + 1 + m[0].length };
}

const fenceRe = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const headingRe = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const hrRe = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const quoteRe = /^ {0,3}> ?/;
const itemRe = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)/;
const tableSepRe = /^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$/;

function isBlockStart(line: string): boolean {
  return fenceRe.test(line) || headingRe.test(line) || hrRe.test(line) || quoteRe.test(line) || itemRe.test(line);
}

function splitRow(line: string): string[] {
  let t = line.trim();
  if (t.startsWith('|')) t = t.slice(1);
  if (t.endsWith('|') && !t.endsWith('\\|')) t = t.slice(0, -1);
  const cells: string[] = [];
  let cur = '';
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '\\' && t[i + 1] === '|') {
      cur += '|';
      i++;
    } else if (t[i] === '|') {
      cells.push(cur.trim());
      cur = '';
    } else {
      cur += t[i];
    }
  }
  cells.push(cur.trim());
  return cells;
}

function renderBlocks(lines: string[], tight = false): string {
  let out = '';
  let i = 0;
  const paragraphs: string[] = [];
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '') {
      i++;
      continue;
    }
    const fence = fenceRe.exec(line);
    if (fence) {
      const marker = fence[1]!;
      const lang = (fence[2] ?? '').replace(/[^\w+#.-]/g, '');
      const body: string[] = [];
      i++;
      // An unclosed fence runs to the end: a streamed reply shows code while it arrives.
      while (i < lines.length && !new RegExp(`^ {0,3}${marker[0] === '`' ? '`' : '~'}{${marker.length},}\\s*$`).test(lines[i]!)) {
        body.push(lines[i]!);
        i++;
      }
      i++;
      const cls = lang ? ` class="language-${escapeHtml(lang)}"` : '';
      out += `<pre><code${cls}>${escapeHtml(body.join('\n'))}</code></pre>`;
      continue;
    }
    const h = headingRe.exec(line);
    if (h) {
      const n = h[1]!.length;
      out += `<h${n}>${renderInline(h[2] ?? '')}</h${n}>`;
      i++;
      continue;
    }
    if (hrRe.test(line)) {
      out += '<hr>';
      i++;
      continue;
    }
    if (quoteRe.test(line)) {
      const body: string[] = [];
      while (i < lines.length && lines[i]!.trim() !== '' && (quoteRe.test(lines[i]!) || !isBlockStart(lines[i]!))) {
        body.push(lines[i]!.replace(quoteRe, ''));
        i++;
      }
      out += `<blockquote>${renderBlocks(body)}</blockquote>`;
      continue;
    }
    const item = itemRe.exec(line);
    if (item) {
      const ordered = /\d/.test(item[2]!);
      const start = ordered ? parseInt(item[2]!, 10) : 1;
      const items: string[][] = [];
      let loose = false;
      // Lines indented to the item's content belong to the item (nested lists, more paragraphs).
      let contentIndent = 0;
      const lead = (l: string) => /^ */.exec(l)![0].length;
      while (i < lines.length) {
        const l = lines[i]!;
        if (l.trim() !== '' && items.length > 0 && lead(l) >= contentIndent) {
          items[items.length - 1]!.push(l.slice(contentIndent));
          i++;
          continue;
        }
        const m = itemRe.exec(l);
        if (m && /\d/.test(m[2]!) === ordered) {
          items.push([l.slice(m[0].length)]);
          contentIndent = m[3] === '' ? m[0].length + 1 : m[0].length;
          i++;
          continue;
        }
        if (l.trim() === '') {
          // A blank line inside a list: the list goes on only if indented content or another item follows.
          const next = lines[i + 1];
          const nextItem = next !== undefined ? itemRe.exec(next) : null;
          if (next !== undefined && next.trim() !== '' && (lead(next) >= contentIndent || (nextItem && /\d/.test(nextItem[2]!) === ordered))) {
            loose = true;
            items[items.length - 1]!.push('');
            i++;
            continue;
          }
          break;
        }
        if (m || isBlockStart(l)) break;
        items[items.length - 1]!.push(l); // lazy continuation of the item's paragraph
        i++;
      }
      const tag = ordered ? 'ol' : 'ul';
      const attr = ordered && start !== 1 ? ` start="${start}"` : '';
      out += `<${tag}${attr}>${items.map((it) => `<li>${renderBlocks(it, !loose)}</li>`).join('')}</${tag}>`;
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && tableSepRe.test(lines[i + 1]!) && lines[i + 1]!.includes('-')) {
      const head = splitRow(line);
      const aligns = splitRow(lines[i + 1]!).map((c) =>
        c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : '',
      );
      i += 2;
      const rows: string[][] = [];
      while (i < lines.length && lines[i]!.trim() !== '' && lines[i]!.includes('|')) {
        rows.push(splitRow(lines[i]!));
        i++;
      }
      const cell = (tag: string, text: string, k: number) => {
        const a = aligns[k];
        return `<${tag}${a ? ` style="text-align:${a}"` : ''}>${renderInline(text)}</${tag}>`;
      };
      out += '<div class="table"><table><thead><tr>' + head.map((c, k) => cell('th', c, k)).join('') + '</tr></thead>';
      out += '<tbody>' + rows.map((r) => '<tr>' + head.map((_, k) => cell('td', r[k] ?? '', k)).join('') + '</tr>').join('');
      out += '</tbody></table></div>';
      continue;
    }
    paragraphs.length = 0;
    while (i < lines.length && lines[i]!.trim() !== '' && (paragraphs.length === 0 || !isBlockStart(lines[i]!))) {
      paragraphs.push(lines[i]!.trim());
      i++;
    }
    const text = renderInline(paragraphs.join('\n'));
    out += tight ? text : `<p>${text}</p>`;
  }
  return out;
}

/** Renders Markdown to HTML that contains only this renderer's own tags. */
export function renderMarkdown(md: string): string {
  return renderBlocks(md.replace(/\r\n?/g, '\n').split('\n'));
}
