/* Live preview on the list editor: show unsaved copy and colours in the real box. */
(() => {
  "use strict";
  const frame = document.querySelector("iframe.preview");
  const form = document.getElementById("settings");
  if (!frame || !form) return;
  const base = frame.getAttribute("src");
  let timer;
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const query = new URLSearchParams();
      for (const field of form.querySelectorAll("[data-preview]")) {
        if (field.value) query.set(field.dataset.preview, field.value);
      }
      frame.src = base + "?" + query.toString();
    }, 300);
  });
})();
