// Types of markdown.js (hand-written): a tiny, safe Markdown renderer for model output.

/** Escape text for use in HTML content and quoted attribute values. */
export declare function escapeHtml(text: unknown): string;

/** Model output as HTML that is safe to assign to innerHTML: escaped first, then **bold**,
 * `code`, http(s) links and line breaks only. */
export declare function renderMarkdown(text: string): string;
