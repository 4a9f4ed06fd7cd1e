/* Newsletter subscribe box. Embed:
   <script src="https://HOST/widget.js" data-list="SLUG" async></script>
   Renders in a shadow root; talks only to the service it was loaded from. */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.dataset.list) return;
  const ds = script.dataset;
  const slug = ds.list;
  const base = new URL(script.src).origin;
  const key = "nlw:" + slug + ":";
  const memory = {};
  let store;
  try {
    store = window.localStorage;
    store.setItem(key + "t", "1");
    store.removeItem(key + "t");
  } catch (e) {
    store = {
      getItem: (k) => (k in memory ? memory[k] : null),
      setItem: (k, v) => { memory[k] = String(v); },
    };
  }
  const emit = (name, detail) =>
    script.dispatchEvent(new CustomEvent("newsletter:" + name, {
      bubbles: true, detail: Object.assign({ list: slug }, detail),
    }));
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const name in attrs || {}) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  };

  /* pow.js */
  const query = ds.lang ? "?lang=" + encodeURIComponent(ds.lang) : "";
  fetch(base + "/api/v1/lists/" + encodeURIComponent(slug) + "/widget" + query, { credentials: "omit" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then(start, (err) => {
      console.error("[newsletter] could not load list " + slug + ":", err.message);
      emit("error", { reason: "config" });
    });

  function start(cfg) {
    const s = Object.assign({}, cfg.settings);
    const t = cfg.texts;
    // Per-page overrides: data-title, data-text, data-button, data-success, data-consent,
    // data-position, data-theme, data-accent, data-trigger, data-delay, data-scroll,
    // data-dismiss-days, data-target, data-name-field.
    for (const name of ["title", "text", "button", "success", "consent", "position", "theme",
      "accent", "trigger", "delay", "scroll", "dismissDays", "target", "nameField"]) {
      if (ds[name] !== undefined) s[name] = ds[name];
    }
    if (!/^#[0-9a-f]{3,8}$/i.test(s.accent)) s.accent = cfg.settings.accent;
    if (!/^bottom-(left|right|center)$/.test(s.position)) s.position = "bottom-right";
    const nameField = s.nameField === true || s.nameField === "true";
    const target = s.target && document.querySelector(s.target);
    // When the form shows, the service stamps the time (a signup sent back sooner than a
    // person types must pay a proof of work) and, where asked, hands out a puzzle.
    // Proof of work: solved in the background from when the box shows; each solution once.
    let pow = s.proofOfWork === true && !ds.preview;
    let puzzle = null, stamp = null;
    const challenge = () => {
      const got = fetch(cfg.endpoint.replace(/subscriptions$/, "challenge"), { credentials: "omit" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))));
      got.catch(() => {});
      return got;
    };
    const solve = (fetched) => {
      puzzle = (fetched || challenge())
        .then((c) => {
          const t0 = performance.now(), until = Date.now() + c.expires_in * 1000 - 3e4;
          return powSolve(c.challenge, c.difficulty).then((n) => {
            performance.measure("newsletter:pow", { start: t0 });
            return { c: c.challenge, n, until };
          });
        });
      puzzle.catch(() => {});
      return puzzle;
    };
    const inline = s.trigger === "inline" || Boolean(target);
    if (!cfg.origin_allowed) {
      console.error("[newsletter] this site (" + location.origin + ") is not allowed to collect " +
        "signups for the list \"" + slug + "\": add it to the list's allowed origins.");
    }
    if (!inline) {
      if (store.getItem(key + "subscribed")) return;
      const dismissed = Number(store.getItem(key + "dismissed"));
      if (dismissed && Date.now() - dismissed < Number(s.dismissDays) * 864e5) return;
    }

    const host = el("div", { "data-newsletter": slug });
    const fixed = inline ? "" : "position:fixed!important;z-index:2147483000!important;" +
      "bottom:8px!important;" + (s.position === "bottom-left" ? "left:8px!important;" :
        s.position === "bottom-center" ? "left:50%!important;transform:translateX(-50%)!important;" :
          "right:8px!important;");
    // Through the CSSOM, not a style attribute: a host page's CSP may forbid those.
    host.style.cssText = "all:initial!important;display:block!important;" + fixed;
    const root = host.attachShadow({ mode: "open" });
    const dark = s.theme === "dark" ||
      (s.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
    const css = `
.box{box-sizing:border-box;width:${inline ? "100%" : "min(360px,calc(100vw - 16px))"};max-height:${inline ? "none" : "60vh"};overflow:auto;
padding:20px;border-radius:12px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:${dark ? "#f3f4f6" : "#1f2937"};background:${dark ? "#1f2937" : "#fff"};text-align:left;
box-shadow:${inline ? "0 0 0 1px rgba(127,127,127,.35)" : "0 8px 30px rgba(0,0,0,.25)"};position:relative}
.box.anim{transition:transform .3s ease-out,opacity .3s ease-out}
.box.hide{transform:translateY(24px);opacity:0}
@media (prefers-reduced-motion:reduce){.box.anim{transition:none}}
*{box-sizing:border-box;font:inherit;color:inherit;margin:0}
h2{font-size:18px;font-weight:700;line-height:1.3;margin:0 28px 6px 0}
p{margin:0 0 12px}
label{display:block;font-size:13px;font-weight:600;margin:0 0 4px}
input[type=email],input[type=text]{display:block;width:100%;padding:10px 12px;margin:0 0 10px;
border:1px solid ${dark ? "#6b7280" : "#9ca3af"};border-radius:8px;background:${dark ? "#111827" : "#fff"};font-size:16px}
input[aria-invalid=true]{border-color:#dc2626}
.consent{display:flex;gap:8px;align-items:flex-start;font-size:13px;font-weight:400;margin:0 0 10px}
.consent input{margin-top:3px;flex:none}
.note{font-size:12px;opacity:.8;margin:0 0 10px}
.note a{text-decoration:underline}
button{cursor:pointer;border:0;border-radius:8px}
.go{display:block;width:100%;padding:11px 14px;font-weight:700;background:${s.accent};color:#fff}
.go[disabled]{opacity:.6;cursor:progress}
.x{position:absolute;top:8px;right:8px;width:32px;height:32px;font-size:22px;line-height:1;
background:transparent;color:inherit;opacity:.7}
.x:hover{opacity:1}
:focus-visible{outline:3px solid ${s.accent};outline-offset:2px}
.msg{font-size:13px;margin:8px 0 0}
.err{color:${dark ? "#fca5a5" : "#b91c1c"}}
.hp{position:absolute!important;left:-10000px!important;width:1px;height:1px;overflow:hidden}`;
    // A constructed stylesheet is not inline style, so a host page's strict CSP allows it;
    // where there are none, a <style> carrying the nonce our own <script> tag was given.
    let style = null;
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      style = el("style", {}, css);
      if (script.nonce) style.nonce = script.nonce;
    }
    const id = "nlw-" + Math.random().toString(36).slice(2);
    const box = el("div", {
      class: "box", role: inline ? "region" : "dialog", "aria-labelledby": id + "-t",
    });
    if (!inline) box.setAttribute("aria-modal", "false");
    const title = el("h2", { id: id + "-t" }, s.title);
    const form = el("form", { novalidate: "" });
    const email = el("input", {
      type: "email", name: "email", id: id + "-e", required: "", autocomplete: "email",
      inputmode: "email", maxlength: "254",
    });
    const status = el("p", { class: "msg", role: "status", "aria-live": "polite" });
    const submit = el("button", { type: "submit", class: "go" }, s.button);
    const trap = el("div", { class: "hp", "aria-hidden": "true" });
    const honeypot = el("input", { type: "text", name: "url", tabindex: "-1", autocomplete: "off" });
    trap.append(honeypot);
    form.append(el("label", { for: id + "-e" }, t.email_label), email);
    let name;
    if (nameField) {
      name = el("input", { type: "text", name: "name", id: id + "-n", autocomplete: "given-name", maxlength: "100" });
      form.append(el("label", { for: id + "-n" }, t.name_label), name);
    }
    let consent;
    if (s.consentCheckbox) {
      const row = el("label", { class: "consent" });
      consent = el("input", { type: "checkbox", name: "consent", required: "" });
      row.append(consent, el("span", {}, s.consent));
      form.append(row);
    } else if (s.consent) {
      form.append(el("p", { class: "note" }, s.consent));
    }
    if (s.privacyUrl && /^https?:\/\//.test(s.privacyUrl)) {
      const note = el("p", { class: "note" });
      note.append(el("a", { href: s.privacyUrl, target: "_blank", rel: "noopener" }, t.privacy));
      form.append(note);
    }
    form.append(trap, submit, status);
    box.append(title);
    if (s.text) box.append(el("p", {}, s.text));
    box.append(form);
    if (!inline) {
      const close = el("button", { type: "button", class: "x", "aria-label": t.close }, "\u00d7");
      close.addEventListener("click", () => dismiss());
      box.append(close);
    }
    if (style) root.append(style);
    root.append(box);

    let open = false;
    const onKey = (ev) => {
      if (ev.key === "Escape" && open && !ev.defaultPrevented) dismiss();
    };
    function show() {
      if (open) return;
      open = true;
      if (inline) {
        target ? target.append(host) : script.after(host);
      } else {
        box.classList.add("anim", "hide");
        document.body.append(host);
        requestAnimationFrame(() => requestAnimationFrame(() => box.classList.remove("hide")));
        document.addEventListener("keydown", onKey);
      }
      emit("shown", { inline });
      if (ds.preview) return;
      const first = challenge();
      stamp = first.then((c) => c.form_stamp, () => "");
      if (pow && !puzzle) solve(first);
    }
    function dismiss() {
      open = false;
      store.setItem(key + "dismissed", String(Date.now()));
      document.removeEventListener("keydown", onKey);
      host.remove();
      emit("dismissed", {});
    }
    function say(text, error) {
      status.textContent = text;
      status.className = "msg" + (error ? " err" : "");
    }
    function fail(text, reason) {
      say(text, true);
      emit("error", { reason });
    }

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      email.value = email.value.trim();
      email.setAttribute("aria-invalid", String(!email.checkValidity()));
      if (!email.checkValidity()) {
        email.focus();
        return fail(t.invalid_email, "invalid");
      }
      if (consent && !consent.checked) {
        consent.focus();
        return fail(t.consent_required, "consent");
      }
      if (ds.preview) {
        form.replaceWith(el("p", { role: "status" }, s.success));
        return;
      }
      submit.disabled = true;
      say(t.sending, false);
      const fields = new URLSearchParams({ email: email.value, page_url: location.href.slice(0, 2000) });
      if (name && name.value.trim()) fields.set("name", name.value.trim());
      if (consent) fields.set("consent", "yes");
      fields.set("url", honeypot.value);
      fields.set("form_stamp", (await stamp) || "");
      let response, body;
      // A refused proof of work (expired, say, or the difficulty went up), or one asked of a
      // quick reader, is solved and sent again once.
      for (let tries = 2; tries--;) {
        try {
          if (pow) {
            let p = await (puzzle || solve());
            if (Date.now() > p.until) p = await solve();
            fields.set("pow_challenge", p.c);
            fields.set("pow_solution", p.n);
          }
          response = await fetch(cfg.endpoint, {
            method: "POST", body: fields, credentials: "omit", headers: { Accept: "application/json" },
          });
        } catch (e) {
          submit.disabled = false;
          return fail(cfg.origin_allowed ? t.network : t.not_allowed, cfg.origin_allowed ? "network" : "origin");
        }
        if (response.status !== 422) puzzle = null; // spent, or refused
        body = {};
        if (response.status === 202) break;
        try { body = await response.json(); } catch (e) { /* not JSON */ }
        if (body.error !== "proof_of_work") break;
        pow = true;
      }
      submit.disabled = false;
      if (response.status === 202) {
        store.setItem(key + "subscribed", "1");
        form.replaceWith(el("p", { role: "status" }, s.success));
        return emit("subscribed", {});
      }
      if (response.status === 429) return fail(t.too_many, "rate_limited");
      if (response.status === 403 && body.error !== "proof_of_work") return fail(t.not_allowed, "origin");
      if (response.status === 422 && body.fields && body.fields.email) {
        email.setAttribute("aria-invalid", "true");
        return fail(t.invalid_email, "invalid");
      }
      fail(body.message || t.network, "http_" + response.status);
    });

    if (inline || s.trigger === "immediate") return show();
    if (s.trigger === "scroll") {
      const onScroll = () => {
        const doc = document.documentElement;
        const reach = (scrollY + innerHeight) / Math.max(doc.scrollHeight, 1) * 100;
        if (reach >= Number(s.scroll)) {
          removeEventListener("scroll", onScroll);
          show();
        }
      };
      addEventListener("scroll", onScroll, { passive: true });
      return onScroll();
    }
    if (s.trigger === "exit" && matchMedia("(hover: hover) and (pointer: fine)").matches) {
      const onOut = (ev) => {
        if (!ev.relatedTarget && ev.clientY <= 0) {
          document.removeEventListener("mouseout", onOut);
          show();
        }
      };
      return document.addEventListener("mouseout", onOut);
    }
    setTimeout(show, Math.max(0, Number(s.delay) || 0) * 1000);
  }
})();
