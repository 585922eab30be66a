/* The annotate page: keyboard-only labeling with the next item already in the page.
 *
 * The page holds the item on screen and the next one (both leased). Submitting or skipping swaps to the
 * next item at once and sends the answer in the background; requests go out one after another, and each
 * answer brings back the stage partial with a fresh next item. Without this script the same forms post
 * and the page reloads.
 */
(function () {
  "use strict";
  const stage = document.getElementById("stage");
  if (!stage) return;
  const help = document.getElementById("annotate-help");
  const announcer = document.getElementById("announce");
  const finished = new Set(); // ids answered or skipped here: a late response must not bring them back
  let chain = Promise.resolve();
  let inFlight = 0;
  let emptyBlock = stage.querySelector(".empty-queue");

  const itemsBox = () => stage.querySelector(".items");
  const articles = () => Array.from(stage.querySelectorAll("article.item"));
  const current = () => stage.querySelector("article.item:not([hidden])");

  function notice(text, isError) {
    const el = document.getElementById("stage-notice");
    if (!el) return;
    el.textContent = text || "";
    el.classList.toggle("error", Boolean(isError));
  }

  function setCount(value) {
    const el = document.getElementById("session-count");
    if (el) el.textContent = String(value);
  }

  function show(article) {
    for (const a of articles()) a.hidden = a !== article;
    const placeholder = stage.querySelector(".loading");
    if (placeholder) placeholder.remove();
    if (emptyBlock && emptyBlock.isConnected) emptyBlock.remove();
    article.focus();
    const badge = article.querySelector(".badge");
    announcer.textContent = (article.dataset.correction ? "Earlier answer re-opened. " : "Next item. ") +
      (badge ? "Reason: " + badge.textContent + "." : "");
  }

  // Exactly one item visible: the first one; otherwise a loading line or the empty-queue message.
  function render() {
    if (current()) return;
    const first = stage.querySelector("article.item");
    if (first) { show(first); return; }
    const box = itemsBox();
    let placeholder = stage.querySelector(".loading");
    if (inFlight > 0) {
      if (!placeholder) {
        placeholder = document.createElement("p");
        placeholder.className = "loading muted";
        placeholder.textContent = "Loading the next item…";
        box.append(placeholder);
      }
    } else {
      if (placeholder) placeholder.remove();
      if (!emptyBlock) {
        emptyBlock = document.createElement("div");
        emptyBlock.className = "empty-queue";
        const link = document.createElement("a");
        link.href = stage.dataset.stageUrl;
        link.textContent = "Check the queue again";
        emptyBlock.append("Nothing else is waiting for you right now. ", link);
      }
      if (!emptyBlock.isConnected) box.append(emptyBlock);
    }
  }

  function merge(doc, isLast) {
    const notes = doc.querySelector("#stage-notice");
    if (notes) {
      notice(notes.textContent.trim(), notes.classList.contains("error"));
      if (notes.dataset.retryItem) finished.delete(notes.dataset.retryItem);
    }
    const count = doc.querySelector("#session-count");
    if (count && isLast) setCount(count.textContent.trim());
    const waiting = doc.querySelector(".stage-bar .muted");
    const here = stage.querySelector(".stage-bar .muted");
    if (waiting && here) here.textContent = waiting.textContent;
    const present = new Set(articles().map((a) => a.dataset.itemId));
    const box = itemsBox();
    let reopened = null;
    for (const a of Array.from(doc.querySelectorAll("article.item"))) {
      const id = a.dataset.itemId;
      if (a.dataset.correction) {
        reopened = present.has(id) ? stage.querySelector(`article[data-item-id="${id}"]`) : a;
        if (!present.has(id)) { a.hidden = true; box.prepend(a); }
        continue;
      }
      if (finished.has(id) || present.has(id)) continue;
      a.hidden = true;
      box.append(a);
    }
    emptyBlock = doc.querySelector(".empty-queue") || null;
    if (reopened) show(reopened);
  }

  function request(url, init) {
    inFlight += 1;
    chain = chain
      .then(() => fetch(url, Object.assign({ headers: { "HX-Request": "true" }, credentials: "same-origin" }, init)))
      .then((response) => response.text().then((html) => {
        if (!response.ok && response.status !== 422 && response.status !== 409) {
          throw new Error("the server answered " + response.status);
        }
        const template = document.createElement("template");
        template.innerHTML = html;
        merge(template.content, inFlight === 1);
      }))
      .catch((error) => notice("Not saved: " + error.message + ". Reload the page to continue.", true))
      .finally(() => { inFlight -= 1; render(); });
    return chain;
  }

  function finish(article) {
    finished.add(article.dataset.itemId);
    article.remove();
    render();
  }

  stage.addEventListener("submit", (event) => {
    const form = event.target;
    const article = form.closest("article.item");
    if (!article) return;
    event.preventDefault();
    const data = new FormData(form);
    if (form.classList.contains("answer")) {
      if (!data.getAll("label").length) {
        notice("Pick a label first: keys 1–9.", true);
        return;
      }
      if (!article.dataset.correction) {
        const el = document.getElementById("session-count");
        setCount(Number(el ? el.textContent : 0) + 1);
      }
      notice("");
    }
    finish(article);
    request(form.action, { method: "POST", body: data });
  });

  function pick(article, index) {
    const inputs = article.querySelectorAll("form.answer input[name=label]");
    const input = inputs[index];
    if (!input) return;
    input.checked = input.type === "checkbox" ? !input.checked : true;
    notice("");
    // The label's description (from the labels page) is read out with it, as the help and sidebar show it.
    const description = input.getAttribute("aria-description");
    announcer.textContent = input.value + (input.type === "checkbox" ? (input.checked ? " on" : " off") : " picked") +
      (description ? ": " + description : "");
  }

  function undo() {
    notice("Re-opening your last answer…");
    request(stage.dataset.reopenUrl, { method: "GET" });
  }

  function toggleHelp() {
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable ||
      /^(TEXTAREA|SELECT)$/.test(target.tagName) ||
      (target.tagName === "INPUT" && !/^(radio|checkbox)$/.test(target.type)));
    if (typing) return;
    if (event.key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (help && help.open) return;
    if (event.key === "u" || event.key === "U") {
      if (!event.repeat) undo();
      event.preventDefault();
      return;
    }
    const article = current();
    if (!article) return;
    if (/^[1-9]$/.test(event.key)) {
      pick(article, Number(event.key) - 1);
      event.preventDefault();
    } else if (event.key === "Enter") {
      if (target instanceof HTMLElement && /^(BUTTON|A|SUMMARY)$/.test(target.tagName)) return;
      event.preventDefault();
      if (!event.repeat) article.querySelector("form.answer").requestSubmit();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      const skip = article.querySelector("form.skip");
      if (skip && !event.repeat) skip.requestSubmit();
    }
  });

  const undoLink = document.getElementById("undo-link");
  if (undoLink) undoLink.addEventListener("click", (event) => { event.preventDefault(); undo(); });
  const helpButton = document.getElementById("help-button");
  if (helpButton) helpButton.addEventListener("click", toggleHelp);

  // Leases last a few minutes: renew the ones on the page while it stays open.
  setInterval(() => { if (!document.hidden && inFlight === 0) request(stage.dataset.stageUrl, { method: "GET" }); },
    4 * 60 * 1000);

  render();
  const first = current();
  if (first) first.focus();
})();
