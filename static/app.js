/* Behaviour every page shares: a readable message when an htmx request fails, and "check all" boxes. */
(function () {
  "use strict";

  function toast(text) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("p");
    item.className = "toast";
    item.textContent = text;
    box.append(item);
    setTimeout(() => item.remove(), 8000);
  }

  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    let detail = "";
    try {
      const body = JSON.parse(xhr.responseText);
      detail = (body.errors || []).map((e) => e.message).join("; ");
    } catch (_) { /* an HTML error page */ }
    const what = xhr.status === 413 ? "The file or request is too large" : "The server answered " + xhr.status;
    toast(what + (detail ? ": " + detail : ".") + " Nothing was changed.");
  });
  document.addEventListener("htmx:sendError", () => toast("The server could not be reached; try again."));

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.dataset.checkAll) return;
    const form = box.form;
    if (!form) return;
    for (const input of form.querySelectorAll(`input[name="${box.dataset.checkAll}"]`)) input.checked = box.checked;
  });
})();
