/* Targeting (a part of widget.js, loaded where a list or a page uses it): whether the box
   may show on this page, now, after `views` pages in this visit. `t` holds the rules:
   showOn and hideOn (page paths, * matching anything), afterViews, minWidth, and
   startDate and endDate (UTC days, both included). */
const matches = (patterns, path) => String(patterns).split(/[\s,]+/).some((p) => p &&
  new RegExp("^" + p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$").test(path));

export default (t, views) => {
  const path = location.pathname, today = new Date().toISOString().slice(0, 10);
  return !(t.showOn && !matches(t.showOn, path) || t.hideOn && matches(t.hideOn, path) ||
    views <= Number(t.afterViews) || innerWidth < Number(t.minWidth) ||
    t.startDate && today < t.startDate || t.endDate && today > t.endDate);
};
