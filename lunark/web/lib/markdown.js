// A tiny, safe Markdown renderer for model output.
//
// Model output is untrusted (a prompt injection can make a model write anything), so
// everything is HTML-escaped first, and only then a few constructs are turned back into
// markup that this module writes itself:
//
//   **bold**            <strong>
//   `code`              <code> (nothing inside it is formatted)
//   [text](https://…)   <a href rel="noopener noreferrer nofollow" target="_blank">, http(s) only
//   line breaks         <br>
//
// Anything else, including raw HTML, <script>, event-handler attributes and javascript:
// links, stays visible text. The result is safe to assign to innerHTML.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for use in HTML content and quoted attribute values. @param {string} text */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// On escaped text: [label](http(s)://url). The URL may not hold whitespace, parentheses or
// the escaped forms of < > " ' (an attribute can't be broken out of anyway: quotes are
// entities by now, and the href is written between double quotes).
const LINK = /\[([^\[\]\n]{1,500})\]\((https?:\/\/[^\s()]{1,2000})\)/g;
const BOLD = /\*\*(?=\S)([^*\n]*?\S)\*\*/g;

/**
 * Render a model's Markdown to safe HTML.
 * @param {string} text
 * @returns {string}
 */
export function renderMarkdown(text) {
  const source = String(text ?? "");
  // Code spans first, so nothing inside them is formatted.
  const parts = source.split(/(`[^`\n]+`)/g);
  return parts
    .map((part) => {
      if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) {
        return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
      }
      return inline(part);
    })
    .join("");
}

function inline(text) {
  const html = escapeHtml(text);
  let out = "";
  let last = 0;
  for (const match of html.matchAll(LINK)) {
    const [whole, label, url] = match;
    out += emphasis(html.slice(last, match.index));
    // url is escaped text and, by the pattern, only ever http(s).
    out += `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${emphasis(label)}</a>`;
    last = match.index + whole.length;
  }
  return out + emphasis(html.slice(last));
}

function emphasis(html) {
  return html.replace(BOLD, "<strong>$1</strong>").replace(/\r?\n/g, "<br>");
}
