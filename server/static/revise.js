// Revising a verse on the page: once a poem is complete, each verse can be clicked; the server's
// POST /v1/poems/revise offers alternatives that keep every rule with the other verses, and
// choosing one replaces the verse.  Also reads the forms' defaults (rhyme, tones per kind) from
// /openapi.json, the one place the server states them.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const CANDIDATES = 3;
  let current = null;  // {request, form, poem, node}: the poem on show

  async function loadDefaults() {
    try {
      const spec = await (await fetch("/openapi.json")).json();
      return spec.components.schemas.PoemForm["x-defaults-by-kind"] || {};
    } catch (error) {
      return {};
    }
  }
  const defaults = loadDefaults();

  // Set the rule controls to the chosen kind's defaults when the form changes.
  async function applyDefaults() {
    const choice = $("form").value;
    const kind = choice.split("-")[0];
    const byKind = (await defaults)[kind];
    if (!byKind) return;
    $("rhyme").checked = Boolean(byKind.rhyme);
    $("tones").value = byKind.tones === true ? "any" : (byKind.tones || "");
  }

  function panel() {
    let div = $("revise-panel");
    if (!div) {
      div = document.createElement("div");
      div.id = "revise-panel";
      $("output").after(div);
    }
    return div;
  }

  // Show `poem` (verses, as generate returns them) in place of `node`, each verse a clickable span.
  function render(poem, node) {
    const holder = document.createElement("span");
    holder.className = "poem";
    let verse = 0;
    for (const line of poem.split("\n")) {
      if (verse) holder.append("\n");
      for (const part of line.split(/(?<=[，。])/)) {
        if (!part) continue;
        verse += 1;
        const span = document.createElement("span");
        span.className = "verse";
        span.dataset.verse = String(verse);
        span.textContent = part.slice(0, -1);
        span.title = "Click for other versions of this verse";
        span.addEventListener("click", () => offer(Number(span.dataset.verse)));
        holder.append(span, part.slice(-1));
      }
    }
    node.replaceWith(holder);
    current.node = holder;
  }

  async function offer(verse) {
    const div = panel();
    for (const span of current.node.querySelectorAll(".verse")) {
      span.classList.toggle("chosen", Number(span.dataset.verse) === verse);
    }
    div.innerHTML = "";
    const note = document.createElement("p");
    note.textContent = `Other versions of verse ${verse}…`;
    div.append(note);
    const body = { model: current.request.model, form: current.form, poem: current.poem, verse, n: CANDIDATES };
    if (current.request.temperature !== undefined) body.temperature = current.request.temperature;
    const response = await fetch("/v1/poems/revise", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      note.className = "error";
      note.textContent = `${response.status}: ${answer && answer.error ? answer.error.message : response.statusText}`;
      return;
    }
    note.textContent = answer.candidates.length
      ? `Verse ${verse}: choose a version (the model's log-probability of the whole poem)`
      : `Verse ${verse}: no other version was drawn; try again`;
    for (const candidate of answer.candidates) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "candidate secondary";
      button.dataset.verse = candidate.verse;
      button.textContent = `${candidate.verse}  (${candidate.logprob.toFixed(1)})`;
      button.addEventListener("click", () => {
        current.poem = candidate.poem;
        render(candidate.poem, current.node);
        div.innerHTML = "";
        $("status").textContent = `Verse ${verse} replaced.`;
      });
      div.append(button);
    }
  }

  window.textgenRevise = {
    // Called by the page when a poem under a jueju/lushi form is complete.
    attach(request, textNode) {
      const panelDiv = $("revise-panel");
      if (panelDiv) panelDiv.innerHTML = "";
      current = { request, form: request.form, poem: textNode.data, node: textNode };
      render(textNode.data, textNode);
    },
    clear() {
      current = null;
      const panelDiv = $("revise-panel");
      if (panelDiv) panelDiv.innerHTML = "";
    },
  };
  $("form").addEventListener("change", applyDefaults);
})();
