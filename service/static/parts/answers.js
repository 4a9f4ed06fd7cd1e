/* What the box says when the service refuses a signup (a part of widget.js, loaded on the
   first refusal): [message, reason, retry-at] for the answer `r` with JSON `body`. The
   service's own words where they are in the box's language (it answers in English), else
   the box's text. */
export default (r, body, t, lang, email) => {
  const code = r.status, why = body.fields || {}, en = lang === "en";
  if (code === 429) {
    const wait = Date.now() + (Number(r.headers.get("Retry-After")) || 0) * 1000;
    const at = new Date(Math.ceil(wait / 6e4) * 6e4)
      .toLocaleTimeString(lang, { hour: "numeric", minute: "2-digit" });
    return [en && body.message || (wait > Date.now() ? t.too_many_until.replace("{time}", at) : t.too_many),
      "rate_limited", wait];
  }
  if (code === 403 && body.error !== "proof_of_work") return [t.not_allowed, "origin"];
  if (code === 422 && why.email) {
    email.setAttribute("aria-invalid", "true");
    email.focus();
    return [en ? (/^[a-z]/.test(why.email) ? t.email_label + " " + why.email + "." : why.email)
      : t.invalid_email, "invalid"];
  }
  if (code === 422 && why.consent) return [t.consent_required, "consent"];
  return [en && body.message || t.network, "http_" + code];
};
