import { describe, expect, it } from 'vitest';
import { escapeHtml, renderInline, renderMarkdown, safeUrl } from './markdown';

/** Parses rendered HTML and lists every element and attribute it holds. */
function inventory(html: string) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  const tags = new Set<string>();
  const attrs = new Set<string>();
  for (const el of Array.from(doc.body.querySelectorAll('*'))) {
    tags.add(el.tagName.toLowerCase());
    for (const a of Array.from(el.attributes)) attrs.add(`${el.tagName.toLowerCase()}[${a.name}]`);
  }
  return { tags, attrs, doc };
}

const allowedTags = new Set(['p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'a', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'hr', 'div', 'table', 'thead', 'tbody', 'tr', 'th', 'td']);
const allowedAttrs = new Set(['a[href]', 'a[target]', 'a[rel]', 'code[class]', 'ol[start]', 'div[class]', 'th[style]', 'td[style]']);

describe('markdown: no HTML injection', () => {
  const attacks = [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '[click](javascript:alert(1))',
    '[click](JaVaScRiPt:alert(1))',
    '[x](jav&#x61;script:alert(1))',
    '[x](data:text/html;base64,PHNjcmlwdD4=)',
    '![pic](https://evil.example/x.png)',
    '[q](https://ok.example/" onmouseover="alert(1))',
    '<https://ok.example/"onmouseover=alert(1)>',
    '`<b>code</b>` and **<i>bold</i>**',
    '```html\n<script>alert(1)</script>\n```',
    '```"><script>x</script>\nbody\n```',
    '| <b>h</b> | x |\n| --- | --- |\n| <svg onload=alert(1)> | y |',
    '> <iframe src="https://evil.example"></iframe>',
    '- <style>body{display:none}</style>',
    '<a href="https://evil.example">raw link</a>',
    'https://ok.example/<script>',
  ];
  for (const md of attacks) {
    it(`keeps ${JSON.stringify(md)} inert`, () => {
      const html = renderMarkdown(md);
      const { tags, attrs, doc } = inventory(html);
      for (const t of tags) expect(allowedTags, `tag <${t}> in ${html}`).toContain(t);
      for (const a of attrs) expect(allowedAttrs, `attribute ${a} in ${html}`).toContain(a);
      for (const a of Array.from(doc.querySelectorAll('a'))) {
        expect(a.getAttribute('href')).toMatch(/^(https?:\/\/|mailto:)/);
        expect(a.getAttribute('rel')).toBe('noopener noreferrer nofollow');
      }
      expect(doc.querySelector('img,script,iframe,style,svg')).toBeNull();
    });
  }

  it('shows the would-be markup as text', () => {
    const { doc } = inventory(renderMarkdown('<script>alert(1)</script>'));
    expect(doc.body.textContent).toBe('<script>alert(1)</script>');
  });

  it('turns images into links, never <img>', () => {
    expect(renderMarkdown('![a cat](https://x.example/cat.png)')).toBe(
      '<p><a href="https://x.example/cat.png" target="_blank" rel="noopener noreferrer nofollow">a cat</a></p>',
    );
  });

  it('safeUrl keeps http(s) and mailto only', () => {
    expect(safeUrl('https://a.example/x?y=1')).toBe('https://a.example/x?y=1');
    expect(safeUrl('mailto:me@a.example')).toBe('mailto:me@a.example');
    for (const bad of ['javascript:alert(1)', '/relative', '//a.example', 'https://a.example/\tx', 'vbscript:x', 'https:/x', ' data:x']) {
      expect(safeUrl(bad), bad).toBeNull();
    }
  });

  it('escapeHtml escapes the five characters', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});

describe('markdown: rendering', () => {
  it('renders emphasis, code, strikethrough and links inline', () => {
    expect(renderInline('**bold** and *it* and _it_ and ~~gone~~ and `a*b*c`')).toBe(
      '<strong>bold</strong> and <em>it</em> and <em>it</em> and <del>gone</del> and <code>a*b*c</code>',
    );
    expect(renderInline('see [docs](https://d.example/a_b) now')).toBe(
      'see <a href="https://d.example/a_b" target="_blank" rel="noopener noreferrer nofollow">docs</a> now',
    );
  });

  it('leaves unmatched or intra-word delimiters alone', () => {
    expect(renderInline('2 * 3 * 4')).toBe('2 * 3 * 4');
    expect(renderInline('snake_case_name')).toBe('snake_case_name');
    expect(renderInline('**not closed')).toBe('**not closed');
    expect(renderInline('\\*literal\\*')).toBe('*literal*');
  });

  it('renders headings, lists, quotes, rules and fenced code', () => {
    const md = '# Title\n\nText line one\nline two\n\n- a\n- b **c**\n\n3. three\n4. four\n\n> quoted\n\n---\n\n```go\nfmt.Println("<hi>")\n```';
    expect(renderMarkdown(md)).toBe(
      '<h1>Title</h1><p>Text line one<br>line two</p><ul><li>a</li><li>b <strong>c</strong></li></ul>' +
        '<ol start="3"><li>three</li><li>four</li></ol><blockquote><p>quoted</p></blockquote><hr>' +
        '<pre><code class="language-go">fmt.Println(&quot;&lt;hi&gt;&quot;)</code></pre>',
    );
  });

  it('shows an unclosed fence as code while a reply streams', () => {
    expect(renderMarkdown('Here:\n```py\nprint(1)')).toBe('<p>Here:</p><pre><code class="language-py">print(1)</code></pre>');
  });

  it('renders nested lists and GFM tables with alignment', () => {
    expect(renderMarkdown('- top\n  - inner\n- next')).toBe('<ul><li>top<ul><li>inner</li></ul></li><li>next</li></ul>');
    expect(renderMarkdown('| a | b |\n|:--|--:|\n| 1 | 2 |')).toBe(
      '<div class="table"><table><thead><tr><th style="text-align:left">a</th><th style="text-align:right">b</th></tr></thead>' +
        '<tbody><tr><td style="text-align:left">1</td><td style="text-align:right">2</td></tr></tbody></table></div>',
    );
  });

  it('links bare URLs without swallowing trailing punctuation', () => {
    expect(renderInline('go to https://a.example/x.')).toBe(
      'go to <a href="https://a.example/x" target="_blank" rel="noopener noreferrer nofollow">https://a.example/x</a>.',
    );
  });
});
