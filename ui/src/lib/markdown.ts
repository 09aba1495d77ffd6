// Model cards as HTML that is safe to insert: Markdown through marked, then DOMPurify,
// always in that order. Links open outside the page; relative links and images resolve
// against the model's repo on the Hub.

import DOMPurify, { type DOMPurify as Purifier } from "dompurify";
import { Marked } from "marked";

const marked = new Marked({ gfm: true, breaks: false });
let purifier: Purifier | undefined;
let base: string | undefined;

function isRelative(url: string): boolean {
  return !/^([a-z][a-z0-9+.-]*:|#|\/\/)/i.test(url);
}

function resolve(url: string): string {
  if (!base || !isRelative(url)) return url;
  try {
    return new URL(url, base).href;
  } catch {
    return url;
  }
}

function instance(): Purifier {
  if (purifier) return purifier;
  purifier = DOMPurify(window);
  purifier.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      const href = node.getAttribute("href");
      if (href) node.setAttribute("href", resolve(href));
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    } else if (node.tagName === "IMG") {
      const src = node.getAttribute("src");
      if (src) node.setAttribute("src", resolve(src));
    }
  });
  return purifier;
}

/**
 * Markdown as sanitized HTML. `baseUrl` (e.g. the repo's file URL on the Hub, ending in
 * "/") is what relative links and images point into.
 */
export function renderMarkdown(source: string, baseUrl?: string): string {
  const html = marked.parse(source, { async: false });
  base = baseUrl;
  try {
    return instance().sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ["style", "form"] });
  } finally {
    base = undefined;
  }
}
