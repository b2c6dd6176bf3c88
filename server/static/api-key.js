// API keys on the page (docs/SERVING.md, "API keys"): every request this page makes to /v1/... carries
// `Authorization: Bearer <key>` once a key is known.  The first 401 asks for a key (once: later requests
// reuse it); the key is kept in this tab's sessionStorage, so it is gone when the tab closes.
"use strict";
(function () {
  const STORAGE = "textgen.apiKey";
  const send = window.fetch.bind(window);
  let asking = null;  // one question at a time, however many requests were refused together

  function askForKey(refused) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const dialog = document.createElement("dialog");
      dialog.id = "api-key-dialog";
      const form = document.createElement("form");
      form.method = "dialog";
      const text = document.createElement("p");
      text.textContent = refused ? "The server did not accept that API key. Enter another:"
                                 : "This server needs an API key.";
      const label = document.createElement("label");
      label.htmlFor = "api-key";
      label.textContent = "API key";
      const input = document.createElement("input");
      input.id = "api-key";
      input.type = "password";
      input.autocomplete = "off";
      input.required = true;
      const buttons = document.createElement("div");
      buttons.className = "buttons";
      buttons.innerHTML = '<button id="api-key-ok" value="ok">Use this key</button>' +
                          '<button value="cancel" class="secondary" formnovalidate>Cancel</button>';
      form.append(text, label, input, buttons);
      dialog.append(form);
      document.body.append(dialog);
      dialog.addEventListener("close", () => {
        const key = dialog.returnValue === "ok" ? input.value.trim() : "";
        dialog.remove();
        asking = null;
        resolve(key || null);
      });
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  window.fetch = async function (resource, init = {}) {
    const url = new URL(typeof resource === "string" ? resource : resource.url, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/v1/")) return send(resource, init);
    const withKey = (key) => {
      const headers = new Headers(init.headers || {});
      if (key) headers.set("Authorization", `Bearer ${key}`);
      return send(resource, { ...init, headers });
    };
    let response = await withKey(sessionStorage.getItem(STORAGE));
    while (response.status === 401) {
      const key = await askForKey(sessionStorage.getItem(STORAGE) !== null);
      if (!key) return response;  // cancelled: the caller shows the 401
      sessionStorage.setItem(STORAGE, key);
      response = await withKey(key);
    }
    return response;
  };
})();
