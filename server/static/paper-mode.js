// The page's "paper" mode: a whole paper from a LaTeX model (POST /v1/paper, textgen.paper's writer),
// shown typeset (the title, the abstract, the sections through window.textgenLatex, as pieces are)
// with the works it cites, its LaTeX source, and a link to the PDF when the server has pdflatex.
// Self-contained: it adds its option to the form menu and its own fields, and handles the submit
// itself when that option is chosen (everything else stays with the page's own script).
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const formSelect = $("form");
  window.textgenPage.addFormMode("paper", "a whole paper (LaTeX, with its PDF)", "paperonly", `
    <label for="paper-title">Paper title <span class="hint">(empty: the model writes one)</span></label>
    <input id="paper-title" type="text" placeholder="On the cohomology of schemes">
    <label for="paper-sections">Sections</label>
    <input id="paper-sections" type="number" min="1" max="6" value="2">`);
  const link = document.createElement("a");
  link.id = "paper-pdf";
  link.hidden = true;
  $("status").after(link);

  let pdfUrl = null;

  function references(list) {
    if (!list.length) return "";
    const items = list.map((r) => `<li>[${r.key}] ${[r.author, r.title, r.year].filter(Boolean).join(", ")}</li>`);
    return `<h3>References</h3><ul class="references">${items.join("")}</ul>`;
  }

  async function writePaper(event) {
    if (formSelect.value !== "paper") return;
    event.preventDefault();
    event.stopImmediatePropagation();  // the page's own generate() is not for this mode
    const request = {
      model: $("model").value,
      sections: Number($("paper-sections").value) || 2,
      max_chars: Number($("max_new_chars").value) || undefined,
      temperature: Number($("temperature").value) || undefined,
    };
    if ($("paper-title").value.trim()) request.title = $("paper-title").value.trim();
    if ($("seed").value !== "") request.seed = Number($("seed").value);
    const output = $("output"), rendered = $("rendered"), status = $("status");
    output.className = "latex";
    output.textContent = "";
    rendered.hidden = true;
    rendered.innerHTML = "";
    link.hidden = true;
    if (pdfUrl) URL.revokeObjectURL(pdfUrl);
    $("generate").disabled = true;
    status.className = "";
    status.textContent = "Writing a paper… (tens of seconds)";
    const started = performance.now();
    try {
      const response = await fetch("/v1/paper", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        status.className = "error";
        status.textContent = `${response.status}: ${body && body.error ? body.error.message : response.statusText}`;
        return;
      }
      output.textContent = body.document;
      const title = document.createElement("h2");
      title.className = "paper-title";
      title.textContent = body.title;
      const abstract = document.createElement("div");
      abstract.className = "paper-abstract";
      const main = document.createElement("div");
      main.className = "paper-body";
      rendered.innerHTML = "";
      rendered.append(title, abstract, main);
      await window.textgenLatex.show(request.model, body.abstract, abstract);
      await window.textgenLatex.show(request.model, body.body, main);
      main.insertAdjacentHTML("beforeend", references(body.references));
      abstract.hidden = main.hidden = false;
      rendered.hidden = false;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      if (body.pdf) {
        const bytes = Uint8Array.from(atob(body.pdf), (c) => c.charCodeAt(0));
        pdfUrl = URL.createObjectURL(new Blob([bytes], { type: "application/pdf" }));
        link.href = pdfUrl;
        link.download = "paper.pdf";
        link.textContent = `PDF (${body.pages} page${body.pages === 1 ? "" : "s"})`;
        link.hidden = false;
      }
      status.textContent = `A paper of ${body.chars} characters in ${seconds} s` +
        (body.pdflatex ? `, compiled by pdflatex: ${body.pages} pages` : " (no pdflatex on the server: LaTeX only)");
    } catch (error) {
      status.className = "error";
      status.textContent = `Error: ${error}`;
    } finally {
      $("generate").disabled = false;
    }
  }

  document.addEventListener("submit", writePaper, true);  // before the page's own handler
})();
