// The page's ci (词) mode: a ci written to a tune (form: {kind: "ci", tune, ...}, textgen.forms.ci).
// It adds its option to the form menu and its own fields: a tune picker that filters the model's tunes
// (GET /v1/models/<name>/tunes) as one types, each with its ci count and shape signature; the tune's
// shapes (又一体); a title (词题); the rhyme and tones rules.  The page's own script sends the request
// (window.textgenCi.formValue) and streams the text; once the ci is complete, show() lays it out in its
// stanzas (上阕 / 下阕, read off the shape by the server), a line per sentence group.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const formSelect = $("form");
  window.textgenPage.addFormMode("ci", "词 (ci) written to a tune", "cionly", `
    <label for="ci-search">Tune 词牌 <span class="hint">(type to filter)</span></label>
    <input id="ci-search" type="text" placeholder="浣溪沙, 鹧鸪天, 水调…" aria-controls="ci-tune">
    <select id="ci-tune" size="7" aria-label="tunes"></select>
    <div id="ci-tune-info" class="hint"></div>
    <label for="ci-variant">Shape <span class="hint">(又一体: where sentences break)</span></label>
    <select id="ci-variant"></select>
    <label for="ci-title">Title 词题 <span class="hint">(optional, a line under the tune)</span></label>
    <input id="ci-title" type="text" placeholder="春晚">
    <label class="check"><input id="ci-rhyme" type="checkbox" checked> rhyme at the tune's rhymes (词林正韵)</label>
    <label class="check"><input id="ci-tones" type="checkbox" checked> keep the tones the tune fixes</label>`);

  const tunesByModel = new Map();  // model -> Promise of its tunes (the route's list)
  let tunes = [];

  function loadTunes(model) {
    if (!tunesByModel.has(model)) {
      tunesByModel.set(model, fetch(`/v1/models/${encodeURIComponent(model)}/tunes`)
        .then(async (response) => {
          const body = await response.json().catch(() => null);
          if (!response.ok) throw new Error(body && body.error ? body.error.message : response.statusText);
          return body.tunes;
        })
        .catch((error) => { tunesByModel.delete(model); throw error; }));
    }
    return tunesByModel.get(model);
  }

  function chosenTune() {
    return tunes.find((t) => t.tune === $("ci-tune").value) || null;
  }

  function chosenShape() {
    const tune = chosenTune();
    return tune ? tune.variants[Number($("ci-variant").value) || 0] : null;
  }

  // The tunes whose names hold what was typed (any of its characters in order), the most written first.
  function filterTunes() {
    const typed = $("ci-search").value.trim();
    const select = $("ci-tune");
    const before = select.value;
    select.innerHTML = "";
    const pattern = new RegExp([...typed].map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*"));
    const shown = tunes.filter((t) => pattern.test(t.tune));
    for (const t of shown) {
      const label = `${t.tune} · ${t.ci} ci · ${t.variants[0].signature}`;
      select.add(new Option(label, t.tune));
    }
    const exact = shown.find((t) => t.tune === typed);
    select.value = exact ? exact.tune : (shown.some((t) => t.tune === before) ? before : (shown[0] || {}).tune || "");
    showTune();
  }

  function showTune() {
    const tune = chosenTune();
    const variant = $("ci-variant");
    variant.innerHTML = "";
    if (!tune) {
      $("ci-tune-info").textContent = tunes.length ? "No tune by that name." : "";
      return;
    }
    for (const v of tune.variants) {
      variant.add(new Option(`${v.name} · ${v.signature} · ${v.ci} ci`, String(v.index)));
    }
    showShape();
  }

  function showShape() {
    const shape = chosenShape();
    if (!shape) return;
    const stanzas = shape.stanzas.map((s) => `${s.name} ${s.chars}`).join(" / ");
    $("ci-tune-info").textContent = `${chosenTune().tune}: ${shape.chars} characters (${stanzas}), ` +
      `${shape.rhyme_groups} rhyme group${shape.rhyme_groups === 1 ? "" : "s"}`;
  }

  async function refresh() {
    if (formSelect.value !== "ci") return;
    const model = $("model").value;
    tunes = [];
    filterTunes();
    $("ci-tune-info").textContent = "Loading the tunes…";
    try {
      tunes = await loadTunes(model);
      if (model !== $("model").value) return;  // the model changed meanwhile
      filterTunes();
      if (!tunes.length) $("ci-tune-info").textContent = `${model} writes no ci (its vocabulary lacks ，。).`;
    } catch (error) {
      $("ci-tune-info").textContent = `Cannot list the tunes: ${error.message}`;
    }
  }

  formSelect.addEventListener("change", refresh);
  $("model").addEventListener("change", refresh);
  $("ci-search").addEventListener("input", filterTunes);
  $("ci-search").addEventListener("keydown", (event) => {  // Enter takes the first tune shown, not the form
    if (event.key === "Enter") { event.preventDefault(); $("ci-tune").focus(); }
  });
  $("ci-tune").addEventListener("change", showTune);
  $("ci-variant").addEventListener("change", showShape);

  function lineElement(text) {
    const line = document.createElement("div");
    line.className = "ci-line";
    line.textContent = text;
    return line;
  }

  window.textgenCi = {
    // The form object of the fields (the page sends it); the tune typed when none is shown in the list,
    // so that the server's 422 names the nearest tunes.
    formValue() {
      const form = { kind: "ci", tune: $("ci-tune").value || $("ci-search").value.trim() };
      const shape = chosenShape();
      if (shape) form.variant = shape.index;
      if ($("ci-title").value.trim()) form.title = $("ci-title").value.trim();
      form.rhyme = $("ci-rhyme").checked;
      form.tones = $("ci-tones").checked;
      return form;
    },
    // Lay the complete ci (its text after the tune and title lines) out in its stanzas; the
    // heading keeps the tune and title lines the model read.
    show(request, text) {
      const output = $("output");
      const tune = tunes.find((t) => t.tune === request.form.tune);
      const shape = tune && tune.variants[request.form.variant || 0];
      const lines = text.split("\n").filter((line) => line !== "");
      if (!shape || shape.stanzas.reduce((n, s) => n + s.lines, 0) !== lines.length) return false;
      output.innerHTML = "";
      output.classList.add("ci");
      const heading = document.createElement("div");
      heading.className = "prompt ci-heading";
      heading.textContent = [request.form.tune, request.form.title].filter(Boolean).join("\n");
      output.append(heading);
      let at = 0;
      for (const stanza of shape.stanzas) {
        const block = document.createElement("div");
        block.className = "stanza";
        block.dataset.name = stanza.name;
        const name = document.createElement("div");
        name.className = "stanza-name";
        name.textContent = stanza.name;
        block.append(name, ...lines.slice(at, at + stanza.lines).map(lineElement));
        at += stanza.lines;
        output.append(block);
      }
      return true;
    },
  };
})();
