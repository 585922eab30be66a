/* The new-project page: "Add a label row" (Alt+N) copies an empty label row and focuses its name. The
   form works without this script: it starts with a few empty rows and a failed submit keeps every row. */
(function () {
  "use strict";
  const button = document.getElementById("add-label-row");
  const body = document.querySelector(".label-rows tbody");
  if (!button || !body) return;
  button.hidden = false;

  function addRow() {
    const rows = body.querySelectorAll("tr.label-row");
    const row = rows[rows.length - 1].cloneNode(true);
    const n = rows.length + 1;
    row.querySelector("td.num").textContent = String(n);
    row.querySelectorAll(".field-error").forEach((el) => el.remove());
    row.querySelectorAll("input").forEach((input) => {
      input.value = "";
      input.removeAttribute("aria-invalid");
      const what = input.name.replace("label_", "");
      input.setAttribute("aria-label", "Label " + n + " " + what);
    });
    body.appendChild(row);
    row.querySelector("input[name=label_name]").focus();
  }

  button.addEventListener("click", addRow);
  document.addEventListener("keydown", (event) => {
    if (event.altKey && !event.ctrlKey && !event.metaKey && (event.key === "n" || event.key === "N")) {
      event.preventDefault();
      addRow();
    }
  });
})();
