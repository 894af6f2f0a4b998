// The safe Markdown renderer: model output can never become markup of its own.
import assert from "node:assert/strict";
import { test } from "node:test";

import { escapeHtml, renderMarkdown } from "../../lunark/web/lib/markdown.js";

test("bold, code, http(s) links and line breaks", () => {
  assert.equal(renderMarkdown("**10 ETH** sent"), "<strong>10 ETH</strong> sent");
  assert.equal(renderMarkdown("run `a < b` now"), "run <code>a &lt; b</code> now");
  assert.equal(
    renderMarkdown("see [the tx](https://etherscan.io/tx/0xab?x=1&y=2)"),
    'see <a href="https://etherscan.io/tx/0xab?x=1&amp;y=2" target="_blank" rel="noopener noreferrer nofollow">the tx</a>',
  );
  assert.equal(renderMarkdown("one\ntwo"), "one<br>two");
  assert.equal(renderMarkdown("`**not bold**`"), "<code>**not bold**</code>");
  assert.equal(renderMarkdown("[**b**](http://x.test)"), '<a href="http://x.test" target="_blank" rel="noopener noreferrer nofollow"><strong>b</strong></a>');
});

test("raw HTML, scripts and event handlers stay text", () => {
  const evil = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>';
  const html = renderMarkdown(evil);
  assert.ok(!html.includes("<script"), html);
  assert.ok(!html.includes("<img"), html);
  assert.ok(!html.includes("<a "), html);
  assert.equal(html, escapeHtml(evil));
});

test("only http(s) links become links", () => {
  for (const url of ["javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "//evil.test", "JaVaScRiPt:alert(1)"]) {
    const html = renderMarkdown(`[click](${url})`);
    assert.ok(!html.includes("<a"), `${url} -> ${html}`);
  }
});

test("a link cannot break out of its attribute", () => {
  const html = renderMarkdown('[x](https://a.test/"onmouseover="alert(1))');
  assert.ok(!/href="[^"]*"\s*onmouseover/.test(html), html);
  assert.ok(!html.includes('"onmouseover'), html);
  const inLabel = renderMarkdown('[<img src=x onerror=alert(1)>](https://a.test)');
  assert.ok(!inLabel.includes("<img"), inLabel);
});

test("escapeHtml escapes the five characters", () => {
  assert.equal(escapeHtml(`<>&"'`), "&lt;&gt;&amp;&quot;&#39;");
  assert.equal(renderMarkdown(undefined), "");
});
