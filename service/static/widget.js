/* Newsletter subscribe box. Embed:
   <script src="https://HOST/widget.js" data-list="SLUG" async></script>
   Renders in a shadow root; talks only to the service it was loaded from. */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.dataset.list) return;
  const ds = script.dataset;
  // data-min-width: the site owner wants no box on screens narrower than this.
  if (ds.minWidth && innerWidth < ds.minWidth) return;
  const slug = ds.list;
  const base = new URL(script.src).origin;
  const key = "nlw:" + slug + ":";
  const memory = {};
  let store, views = 1;
  try {
    // Pages seen in this visit (the tab's session storage), for targeting.
    views = sessionStorage[key + "v"] = Number(sessionStorage[key + "v"]) + 1 || 1;
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
  // Every request gives up after 15 s: a hung service must not leave the reader waiting.
  const get = (url, options) => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 15e3);
    return fetch(url, Object.assign({ credentials: "omit", signal: abort.signal }, options));
  };
  const json = (r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)));
  // Through the CSSOM, not a style attribute: a host page's CSP may forbid those.
  const host = el("div", { "data-newsletter": slug });
  const frame = (css) => { host.style.cssText = "all:initial!important;display:grid!important;" + css; };
  // An inline form the tag asks for takes its place at once, about its height reserved
  // (phones' compact form, or the wider one), so the article does not shift when it arrives.
  // Nothing here may read the layout: that would make this insertion count as a shift.
  const spot = ds.target && document.querySelector(ds.target);
  const placed = ds.trigger === "inline" || spot;
  if (placed) {
    frame("min-height:clamp(220px,(100vw - 481px)*999,280px)!important");
    spot ? spot.append(host) : script.after(host);
  }

  // What a list may not use (the proof-of-work solver, A/B tests, targeting) comes in
  // parts, fetched only where needed: ES modules beside this script, cached for good.
  const part = (name) => import(base + "/widget/" + name + ".js?v=" + /* parts */"").then((m) => m.default);
  // Counting what the box does (service/box_counts.py): the event, the page's path, the
  // copy's variant and whether the screen is a phone's. No cookie, no identifier; nothing
  // at all where the reader asks not to be tracked (Do Not Track, Global Privacy Control).
  const quiet = navigator.doNotTrack === "1" || navigator.globalPrivacyControl || ds.preview;
  const device = innerWidth < 481 ? "phone" : "larger";
  let variant = "";
  const counted = {};
  // Targeting: where a page's data- attributes rule it out, the box asks for nothing; the
  // list's own rules are checked when its settings come.
  const aims = ["showOn", "hideOn", "afterViews", "minWidth", "startDate", "endDate"];
  const aimed = async (t) => !aims.some((n) => t[n] && t[n] != "0") || (await part("target"))(t, views);
  const query = ds.lang ? "?lang=" + encodeURIComponent(ds.lang) : "";
  aimed(ds).then((go) => go ? get(base + "/api/v1/lists/" + encodeURIComponent(slug) + "/widget" + query)
    .then(json)
    .then(start, (err) => {
      host.remove();
      console.error("[newsletter] could not load list " + slug + ":", err.message);
      emit("error", { reason: "config" });
    }) : host.remove());

  async function start(cfg) {
    const s = Object.assign({}, cfg.settings);
    const t = cfg.texts;
    const lang = cfg.language;
    if (!cfg.origin_allowed) {
      host.remove();
      console.error("[newsletter] " + location.origin + " is not allowed to collect signups for " +
        "the list " + slug + " (add it to the list's allowed origins): the box is not shown.");
      return emit("error", { reason: "origin" });
    }
    // An A/B test (service/box_tests.py): the reader keeps the variant first picked.
    if (s.test && !store.getItem(key + "subscribed")) {
      Object.assign(s, (await part("ab"))(s.test.variants, store, key));
      variant = s.key;
    }
    // Per-page overrides: data-title, data-text, data-button, data-success, data-consent,
    // data-position, data-theme, data-accent, data-trigger, data-delay, data-scroll,
    // data-dismiss-days, data-target, data-name-field; data-show-on, data-hide-on,
    // data-after-views, data-min-width, data-start-date, data-end-date.
    for (const name of ["title", "text", "button", "success", "consent", "position", "theme",
      "accent", "trigger", "delay", "scroll", "dismissDays", "target", "nameField", ...aims]) {
      if (ds[name] !== undefined) s[name] = ds[name];
    }
    if (!await aimed(s)) return host.remove();
    if (!/^#[0-9a-f]{3,8}$/i.test(s.accent)) s.accent = cfg.settings.accent;
    if (!/^bottom-(left|right|center)$/.test(s.position)) s.position = "bottom-right";
    // The optional fields, and the triggers other than a delay, come as parts.
    const named = s.nameField === true || s.nameField === "true";
    const optional = named || s.consentCheckbox || s.privacyUrl;
    const target = s.target && document.querySelector(s.target);
    // When the form shows, the service stamps the time (a signup sent back sooner than a
    // person types must pay a proof of work) and, where asked, hands out a puzzle.
    // Proof of work: solved in the background from when the box shows; each solution once.
    let pow = s.proofOfWork === true && !ds.preview;
    let puzzle = null, stamp = null;
    const count = (e) => quiet || counted[e] || (counted[e] = navigator.sendBeacon(
      cfg.endpoint.replace(/subscriptions$/, "events"),
      new URLSearchParams({ e, p: location.pathname, v: variant, d: device })));
    const challenge = () => {
      const got = get(cfg.endpoint.replace(/subscriptions$/, "challenge")).then(json);
      got.catch(() => {});
      return got;
    };
    const solve = (fetched) => {
      puzzle = (fetched || challenge())
        .then((c) => {
          const t0 = performance.now(), until = Date.now() + c.expires_in * 1000 - 3e4;
          return part("pow").then((powSolve) => powSolve(c.challenge, c.difficulty)).then((n) => {
            performance.measure("newsletter:pow", { start: t0 });
            return { c: c.challenge, n, until };
          });
        });
      puzzle.catch(() => {});
      return puzzle;
    };
    const inline = s.trigger === "inline" || Boolean(target);
    if (!inline) {
      if (store.getItem(key + "subscribed")) return;
      const dismissed = Number(store.getItem(key + "dismissed"));
      if (dismissed && Date.now() - dismissed < Number(s.dismissDays) * 864e5) return;
    }
    const extra = optional && await part("fields");

    if (!placed) {
      frame(inline ? "" : "position:fixed!important;z-index:2147483000!important;" +
        "bottom:8px!important;" + (s.position === "bottom-left" ? "left:8px!important;" :
          s.position === "bottom-center" ? "left:50%!important;transform:translateX(-50%)!important;" :
            "right:8px!important;"));
    }
    const root = host.attachShadow({ mode: "open" });
    const dark = s.theme === "dark" ||
      (s.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
    const fg = dark ? "#f3f4f6" : "#1f2937", bg = dark ? "#1f2937" : "#fff";
    // The focus ring: the accent where it stands out 3:1 from the box (the service works
    // that out for the list's own, on a light and on a dark box), else the text colour.
    const ring = s.accent === cfg.settings.accent && s.ring[+dark] || fg;
    // Phones (up to 480 px wide): smaller, the button beside the address, even margins.
    const css = `
.box{box-sizing:border-box;width:${inline?"100%":"min(360px,calc(100vw - 16px))"};max-height:${inline?"none":"60vh"};overflow:auto;
padding:20px;border-radius:12px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:${fg};background:${bg};text-align:left;
box-shadow:${inline?"0 0 0 1px rgba(127,127,127,.35)":"0 8px 30px rgba(0,0,0,.25)"};position:relative}
.anim{transition:transform .3s ease-out,opacity .3s ease-out}
.hide{transform:translateY(24px);opacity:0}
@media (prefers-reduced-motion:reduce){.anim{transition:none}}
*{box-sizing:border-box;font:inherit;color:inherit;margin:0}
h2{font-size:18px;font-weight:700;line-height:1.3;margin:0 28px 6px 0}
p{margin:0 0 12px}
label{display:block;font-size:13px;font-weight:600;margin:0 0 4px}
input:not([type=checkbox]){display:block;width:100%;padding:10px 12px;margin:0 0 10px;
border:1px solid ${dark?"#9ca3af":"#6b7280"};border-radius:8px;background:${dark?"#111827":"#fff"};font-size:16px}
input[aria-invalid=true]{border-color:#dc2626}
.consent{display:flex;gap:8px;align-items:flex-start;font-size:13px;font-weight:400;margin:0 0 10px}
.consent input{margin-top:3px;flex:none}
.note{font-size:12px;opacity:.8;margin:8px 0 0}
.note a{text-decoration:underline}
button{cursor:pointer;border:0;border-radius:8px}
.go{display:block;width:100%;padding:11px 14px;font-weight:700;background:${s.accent};color:#fff}
.go[disabled]{opacity:.6;cursor:progress}
.x{position:absolute;top:8px;right:8px;width:32px;height:32px;font-size:22px;line-height:1;
background:transparent;color:inherit;opacity:.7}
.x:hover{opacity:1}
:focus-visible{outline:3px solid ${ring};outline-offset:2px}
.msg{font-size:13px}
.msg:not(:empty){margin-top:8px}
.ok{font-size:inherit}
.err{color:${dark?"#fca5a5":"#b91c1c"}}
.hp{position:absolute!important;left:-10000px!important;width:1px;height:1px;overflow:hidden}
@media (max-width:480px){.box{padding:12px 14px;font-size:14px;line-height:1.35${inline?"":";width:calc(100vw - 16px)"}}
h2{font-size:16px;margin-bottom:4px}p{margin-bottom:8px}label{margin-bottom:2px}
input{padding:8px 10px}
.one{display:grid;grid-template-columns:minmax(0,1fr) auto;column-gap:8px}.one>*{grid-column:1/-1}
.one>input{grid-area:2/1;margin:0}.one>.go{grid-area:2/2;width:auto}}
@media (max-height:600px){.pitch{display:none}}
@media (forced-colors:active){.box{border:1px solid CanvasText}.go{border:2px solid ButtonText}}`;
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
      class: "box", role: inline ? "region" : "dialog", "aria-labelledby": id + "-t", lang,
    });
    if (!inline) box.setAttribute("aria-modal", "false");
    const title = el("h2", { id: id + "-t" }, s.title);
    const pitch = s.text && el("p", { class: "pitch" }, s.text);
    const form = el("form", { novalidate: "", class: named ? "" : "one" });
    const email = el("input", {
      type: "email", name: "email", id: id + "-e", required: "", autocomplete: "email",
      inputmode: "email", maxlength: "254",
    });
    // The live region is there from the start: screen readers announce changes to it.
    const status = el("p", { class: "msg", role: "status", "aria-live": "polite" });
    const submit = el("button", { type: "submit", class: "go" }, s.button);
    // The honeypot: no person fills it, and no browser autofills it either (autofill only
    // fills fields that can take focus; an inert one cannot).
    const trap = el("div", { class: "hp", inert: "" });
    const honeypot = el("input", { type: "text", name: "url", tabindex: "-1", autocomplete: "off" });
    trap.append(honeypot);
    form.append(el("label", { for: id + "-e" }, t.email_label), email);
    const { name, consent, privacy } = extra ? extra(el, form, id, t, s) : {};
    form.append(trap, submit);
    if (!consent && s.consent) form.append(el("p", { class: "note" }, s.consent));
    if (privacy) form.append(privacy);
    box.append(title);
    if (pitch) box.append(pitch);
    box.append(form, status);
    if (!inline) {
      const close = el("button", { type: "button", class: "x", "aria-label": t.close }, "\u00d7");
      close.addEventListener("click", () => dismiss());
      box.append(close);
      // Escape closes it while the reader is in it, not anywhere on the page.
      root.addEventListener("keydown", (ev) => {
        if (ev.key === "Escape" && !ev.defaultPrevented) dismiss();
      });
    }
    if (style) root.append(style);
    root.append(box);

    let open = false, back = null;
    // Where focus was before it came into the box: it goes back there when the box closes.
    document.addEventListener("focusin", (ev) => {
      if (ev.target !== host) back = ev.target;
    });
    function show() {
      if (open) return;
      open = true;
      back = document.activeElement;
      if (inline) {
        if (!host.isConnected) target ? target.append(host) : script.after(host);
      } else {
        box.classList.add("anim", "hide");
        // Into <html>, not <body>: a theme's transform on body would carry a fixed box away.
        document.documentElement.append(host);
        requestAnimationFrame(() => requestAnimationFrame(() => box.classList.remove("hide")));
      }
      emit("shown", { inline });
      count("shown");
      if (ds.preview) return;
      const first = challenge();
      stamp = first.then((c) => c.form_stamp, () => "");
      // Solved from now where the list asks for it, or a flood makes every signup pay.
      first.then((c) => (pow = pow || c.required) && !puzzle && solve(first), () => {});
    }
    function dismiss() {
      store.setItem(key + "dismissed", String(Date.now()));
      if (document.activeElement === host && back) back.focus();
      host.remove();
      emit("dismissed", {});
      count("dismissed");
    }
    function say(text, kind) {
      status.textContent = text;
      status.className = "msg" + kind;
    }
    function fail(text, reason) {
      say(text, " err");
      emit("error", { reason });
    }
    // The result replaces the heading, the pitch and the form; it takes focus and is
    // announced through the live region.
    function done() {
      title.textContent = t.result_ok_title;
      title.tabIndex = -1;
      if (pitch) pitch.remove();
      form.remove();
      say(s.success, " ok");
      title.focus();
    }

    let wait = 0, busy = "";
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
      if (ds.preview) return done();
      // Told to come back later: not before then.
      if (Date.now() < wait) return fail(busy, "rate_limited");
      submit.disabled = true;
      say(t.sending, "");
      count("submitted");
      const fields = new URLSearchParams({ email: email.value, page_url: location.href.slice(0, 2000) });
      if (name && name.value.trim()) fields.set("name", name.value.trim());
      if (consent) fields.set("consent", "yes");
      fields.set("url", honeypot.value);
      fields.set("lang", lang);
      if (!quiet) fields.set("box", device + ":" + variant);
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
          response = await get(cfg.endpoint, {
            method: "POST", body: fields, headers: { Accept: "application/json" },
          });
          body = response.status === 202 ? {} : await response.json().catch(() => ({}));
        } catch (e) {
          submit.disabled = false;
          return fail(t.network, e.name === "AbortError" ? "timeout" : "network");
        }
        if (response.status !== 422) puzzle = null; // spent, or refused
        if (body.error !== "proof_of_work") break;
        pow = true;
      }
      submit.disabled = false;
      if (response.status === 202) {
        store.setItem(key + "subscribed", "1");
        done();
        return emit("subscribed", {});
      }
      const [text, reason, until] = (await part("answers"))(response, body, t, lang, email);
      if (until) {
        wait = until;
        busy = text;
      }
      fail(text, reason);
    });

    if (inline || s.trigger === "immediate") return show();
    if (/^(scroll|exit)$/.test(s.trigger) && (await part("triggers"))(s, show) !== false) return;
    // The delay counts the time the page is in view: it waits while the tab is hidden.
    let left = Math.max(0, Number(s.delay) || 0) * 1000, timer = 0, since = 0;
    const tick = () => {
      if (timer) left -= Date.now() - since;
      clearTimeout(timer);
      timer = 0;
      if (!document.hidden) {
        since = Date.now();
        timer = setTimeout(show, left);
      }
    };
    document.addEventListener("visibilitychange", tick);
    tick();
  }
})();
