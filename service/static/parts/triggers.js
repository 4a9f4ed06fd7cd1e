/* The box's scroll and exit triggers (a part of widget.js, loaded where a list uses them).
   Calls show() when the reader has scrolled far enough, or moves to leave the page. */
export default (s, show) => {
  if (s.trigger === "scroll") {
    // Read from whichever scrolls the page: the document, or a theme's body.
    const onScroll = () => {
      const [page] = [document.scrollingElement, document.body].filter(Boolean)
        .sort((a, b) => b.scrollHeight - b.clientHeight - a.scrollHeight + a.clientHeight);
      if ((page.scrollTop + page.clientHeight) / Math.max(page.scrollHeight, 1) * 100 >= Number(s.scroll)) {
        removeEventListener("scroll", onScroll, true);
        show();
      }
    };
    addEventListener("scroll", onScroll, { passive: true, capture: true });
    return onScroll();
  }
  // Exit intent needs a mouse: on touch screens the box waits for its delay instead.
  if (!matchMedia("(hover: hover) and (pointer: fine)").matches) return false;
  const onOut = (ev) => {
    if (!ev.relatedTarget && ev.clientY <= 0) {
      document.removeEventListener("mouseout", onOut);
      show();
    }
  };
  document.addEventListener("mouseout", onOut);
};
