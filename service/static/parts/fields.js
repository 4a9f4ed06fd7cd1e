/* The box's optional fields (a part of widget.js, loaded where a list uses them): the
   name, the consent checkbox and the privacy link. */
export default (el, form, id, t, s) => {
  const got = {};
  if (s.nameField === true || s.nameField === "true") {
    got.name = el("input", { type: "text", name: "name", id: id + "-n", autocomplete: "given-name", maxlength: "100" });
    form.append(el("label", { for: id + "-n" }, t.name_label), got.name);
  }
  if (s.consentCheckbox) {
    const row = el("label", { class: "consent" });
    got.consent = el("input", { type: "checkbox", name: "consent", required: "" });
    row.append(got.consent, el("span", {}, s.consent));
    form.append(row);
  }
  if (s.privacyUrl && /^https?:\/\//.test(s.privacyUrl)) {
    got.privacy = el("p", { class: "note" });
    got.privacy.append(el("a", { href: s.privacyUrl, target: "_blank", rel: "noopener" }, t.privacy));
  }
  return got;
};
