// Shows the LaTeX a `form: latex` sample returns as a reader sees it once typeset: math through
// KaTeX (vendored in /static/katex, nothing from a CDN), with the model's own preamble macros
// (GET /v1/models/<name>/latex), and the document's structure (sections, theorem-like
// environments, proofs, lists, displayed equations) as HTML.  The source stays on the page too.
window.textgenLatex = (() => {
  "use strict";
  const macroCache = new Map();
  const DISPLAY = /^(equation|align|gather|multline|eqnarray|displaymath|flalign)\*?$/;
  const ALIGNED = /^(align|eqnarray|flalign)\*?$/;
  const LISTS = { enumerate: "ol", itemize: "ul" };
  const INNER = /^(matrix|pmatrix|bmatrix|Bmatrix|vmatrix|Vmatrix|smallmatrix|cases|aligned|gathered|split)$/;

  async function macrosFor(model) {
    if (!macroCache.has(model)) {
      const response = await fetch(`/v1/models/${encodeURIComponent(model)}/latex`);
      macroCache.set(model, response.ok ? (await response.json()).macros : {});
    }
    return macroCache.get(model);
  }

  const escape = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  function math(source, display, macros) {
    const body = source.replace(/\\label\{[^}]*\}/g, "").replace(/\\nonumber|\\notag/g, "");
    return katex.renderToString(body, { displayMode: display, throwOnError: false, macros: { ...macros } });
  }

  // Text with inline math: $...$ through KaTeX, a few text commands as HTML, the rest as written.
  function inline(text, macros) {
    const parts = text.split(/(?<!\\)\$/);
    return parts.map((part, i) => {
      if (i % 2) return math(part, false, macros);
      return escape(part)
        .replace(/\\(?:emph|textit)\{([^{}]*)\}/g, "<em>$1</em>")
        .replace(/\\textbf\{([^{}]*)\}/g, "<strong>$1</strong>")
        .replace(/\\(?:eq)?ref\{([^{}]*)\}/g, '<span class="ref">$1</span>')
        .replace(/\\cite\{([^{}]*)\}/g, "[$1]")
        .replace(/\\footnote\{([^{}]*)\}/g, " ($1)")
        .replace(/\\label\{[^{}]*\}|\\noindent|\\medskip|\\bigskip|\\smallskip/g, "")
        .replace(/\{\\(?:it|em)\s+([^{}]*)\}/g, "<em>$1</em>")
        .replace(/\{\\bf\s+([^{}]*)\}/g, "<strong>$1</strong>")
        .replace(/\\ /g, " ").replace(/~/g, "&nbsp;").replace(/\\([{}%$&#_])/g, "$1");
    }).join("");
  }

  // The end of the environment opened at `from` (where its body starts), counting nested ones of the name.
  function matchingEnd(source, name, from) {
    const open = `\\begin{${name}}`, close = `\\end{${name}}`;
    let depth = 1, i = from;
    while (depth > 0) {
      const nextOpen = source.indexOf(open, i), nextClose = source.indexOf(close, i);
      if (nextClose < 0) return [source.length, source.length];
      if (nextOpen >= 0 && nextOpen < nextClose) { depth += 1; i = nextOpen + open.length; continue; }
      depth -= 1;
      i = nextClose + close.length;
      if (depth === 0) return [nextClose, i];
    }
  }

  function paragraphs(text, macros) {
    const html = [];
    let rest = text;
    for (;;) {  // display math written with $$ ... $$
      const start = rest.search(/(?<!\\)\$\$/);
      if (start < 0) break;
      const end = rest.indexOf("$$", start + 2);
      if (end < 0) break;
      html.push(paragraphs(rest.slice(0, start), macros), math(rest.slice(start + 2, end), true, macros));
      rest = rest.slice(end + 2);
    }
    const section = /\\(sub)?section\*?\{([^{}]*)\}/g;
    rest = rest.replace(section, (_, sub, title) => `\n\n\u0000${sub ? "h4" : "h3"}\u0000${title}\n\n`);
    for (const block of rest.split(/\n\s*\n/)) {
      const trimmed = block.trim();
      if (!trimmed) continue;
      const heading = trimmed.match(/^\u0000(h3|h4)\u0000(.*)$/s);
      html.push(heading ? `<${heading[1]}>${escape(heading[2])}</${heading[1]}>` : `<p>${inline(trimmed, macros)}</p>`);
    }
    return html.join("");
  }

  function blocks(source, macros) {
    const html = [];
    const begin = /\\begin\{([A-Za-z]+\*?)\}/g;
    let at = 0, match;
    while ((match = begin.exec(source)) !== null) {
      const name = match[1];
      if (INNER.test(name)) continue;  // math inside math: KaTeX reads it with its formula
      const [bodyEnd, after] = matchingEnd(source, name, begin.lastIndex);
      const body = source.slice(begin.lastIndex, bodyEnd);
      html.push(paragraphs(source.slice(at, match.index), macros), environment(name, body, macros));
      at = after;
      begin.lastIndex = after;
    }
    html.push(paragraphs(source.slice(at), macros));
    return html.join("");
  }

  function environment(name, body, macros) {
    if (DISPLAY.test(name)) {
      return math(ALIGNED.test(name) ? `\\begin{aligned}${body}\\end{aligned}` : body, true, macros);
    }
    if (LISTS[name]) {
      const items = body.split(/\\item\b/).slice(1).map((item) => `<li>${blocks(item, macros)}</li>`);
      return `<${LISTS[name]}>${items.join("")}</${LISTS[name]}>`;
    }
    if (name === "proof") return `<div class="proof"><em>Proof.</em> ${blocks(body, macros)} <span class="qed">∎</span></div>`;
    const title = name.replace(/\*$/, "");
    return `<div class="theorem env-${escape(title)}"><strong>${escape(title[0].toUpperCase() + title.slice(1))}.</strong> `
      + `${blocks(body, macros)}</div>`;
  }

  // Render `source` (what the API returned) into `target`; resolves when done.
  async function show(model, source, target) {
    const macros = await macrosFor(model);
    target.innerHTML = blocks(source, macros);
    target.hidden = false;
  }

  return { show, blocks };
})();
