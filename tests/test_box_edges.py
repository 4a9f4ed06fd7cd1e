"""The subscribe box at its edges, in real headless Chromium: quick readers, a hung or
refusing service, other languages and sites, phones, high contrast, unusual themes.

Needs Debian's chromium (/usr/bin/chromium; the ``browser`` fixture in conftest.py). The
article page is on another origin than the service, as on a real site.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, expect
from support import ARTIFACTS, SMTPServer
from test_widget_browser import box, open_article, pow_list, site

from service.settings import Settings

# One Chromium for the whole run, on the session's event loop; these tests share it.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

SUBSCRIPTIONS = re.compile(r".*/subscriptions$")
PHONE = {"is_mobile": True, "has_touch": True}


def shadow(expression: str) -> str:
    """A function for ``evaluate`` that runs ``expression`` with the box's shadow root as
    ``root``."""
    root = "document.querySelector('div[data-newsletter]').shadowRoot"
    return f"() => {{ const root = {root}; return {expression}; }}"


async def eventually(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (Playwright's Python API has no ``expect.poll``)."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def opened(browser: Browser, url: str, *, init: str = "", **context: Any) -> Page:
    """A page in a fresh profile, ``init`` run before any of the page's scripts."""
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    if init:
        await page.add_init_script(init)
    await page.goto(url)
    return page


# 1. Quick readers ------------------------------------------------------------------------


@pytest.mark.parametrize("proof_of_work", [False, True], ids=["plain", "proof-of-work"])
async def test_a_reader_who_sends_the_form_at_once_still_gets_the_email(
    browser: Browser, settings: Settings, smtp: SMTPServer, proof_of_work: bool
) -> None:
    """300 ms after the box shows is quicker than the service's 2 s fill time: the box pays
    the proof of work it is asked for, and says "check your inbox" only after the 202."""
    quick = settings.replace(min_fill_time=2.0)
    sent = 0
    for slug, attributes, inline in [
        ("slidein", 'data-trigger="immediate"', False),
        ("inline", 'data-target="#newsletter-inline"', True),
    ]:
        async with site(quick, slug=slug, attributes=attributes, inline=inline) as s:
            if proof_of_work:
                await pow_list(quick, slug)
            page = await open_article(browser, s.article.url + "/")
            answers: list[int] = []

            def answered(response: Any, answers: list[int] = answers) -> None:
                if SUBSCRIPTIONS.match(response.url):
                    answers.append(response.status)

            page.on("response", answered)
            await expect(box(page)).to_be_visible()
            await page.wait_for_timeout(300)
            address = f"{slug}-{'pow' if proof_of_work else 'plain'}@example.com"
            await page.get_by_label("Email address").fill(address)
            await page.get_by_role("button", name="Subscribe").click()
            await expect(page.get_by_text("Almost done! Check your inbox")).to_be_visible(
                timeout=15000
            )
            assert answers[-1] == 202, answers
            if not proof_of_work:
                assert answers[0] == 403, "too quick: asked for a proof of work first"
            sent += 1
            mails = await smtp.wait_for(sent)
            assert mails[-1].rcpt_tos == [address]


async def test_the_honeypot_stays_empty_when_a_reader_or_autofill_fills_the_form(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    # Chromium's real address autofill needs a saved profile and its popup, which headless
    # Chromium does not drive; what it relies on is tested instead: autofill fills only
    # fields that can take focus, and the honeypot cannot (it is inert, out of the tab order
    # and hidden from assistive technology), while typing and filling the visible fields
    # leave it alone.
    async with site(settings, attributes='data-trigger="immediate" data-name-field="true"') as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(box(page)).to_be_visible()
        trap = await page.evaluate(
            shadow(
                """(() => {
                const hp = root.querySelector('input[name=url]');
                hp.focus();
                return {focused: root.activeElement === hp, inert: hp.closest('[inert]') !== null,
                        tabindex: hp.tabIndex, autocomplete: hp.autocomplete};
            })()"""
            )
        )
        assert trap == {
            "focused": False,
            "inert": True,
            "tabindex": -1,
            "autocomplete": "off",
        }
        await page.get_by_label("Email address").focus()
        await page.keyboard.type("typist@example.com")
        await page.get_by_label("First name (optional)").fill("Tess")
        await page.get_by_label("Email address").fill("typist@example.com")
        assert await page.evaluate(shadow("root.querySelector('input[name=url]').value")) == ""
        async with page.expect_request(SUBSCRIPTIONS) as caught:
            await page.get_by_role("button", name="Subscribe").click()
        assert "&url=&" in (await caught.value).post_data or ""
        await expect(page.get_by_text("Almost done!")).to_be_visible()
        [mail] = await smtp.wait_for(1)
        assert mail.rcpt_tos == ["typist@example.com"]


# 2. A hung service -----------------------------------------------------------------------


async def test_a_service_that_never_answers_gives_the_button_back(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings) as s:
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await page.clock.install()  # the box's 15 s timeout, run on a test clock
        hung: list[Route] = []
        await page.route(SUBSCRIPTIONS, lambda route: hung.append(route))
        await page.goto(s.article.url + "/")
        await expect(box(page)).to_be_visible()
        await page.get_by_label("Email address").fill("patient@example.com")
        button = page.get_by_role("button", name="Subscribe")
        await button.click()
        await expect(page.get_by_text("Sending…")).to_be_visible()
        await expect(button).to_be_disabled()
        await eventually(lambda: len(hung) == 1)
        await page.clock.run_for(16_000)
        await expect(page.get_by_text("Something went wrong. Please try again.")).to_be_visible()
        await expect(button).to_be_enabled()
        await expect(page.get_by_text("Sending…")).to_have_count(0)


# 3. The service's refusals ---------------------------------------------------------------


def refuse(status: int, body: str, headers: dict[str, str] | None = None) -> Any:
    async def handler(route: Route) -> None:
        await route.fulfill(
            status=status,
            content_type="application/json",
            body=body,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Retry-After",
                **(headers or {}),
            },
        )

    return handler


async def test_rate_limits_and_field_errors_show_the_services_reason(
    browser: Browser, settings: Settings
) -> None:
    waiting = (
        '{"error": "too_many_requests", "message": "Too many signups from your network '
        'right now. Please try again in 2 minutes."}'
    )
    wrong = (
        '{"error": "invalid", "message": "Please correct the marked fields.", "fields": '
        '{"email": "The domain name nowhere.invalid does not exist."}}'
    )
    async with site(settings) as s:
        page = await open_article(browser, s.article.url + "/")
        email = page.get_by_label("Email address")
        button = page.get_by_role("button", name="Subscribe")
        await page.route(SUBSCRIPTIONS, refuse(422, wrong))
        await email.fill("someone@nowhere.invalid")
        await button.click()
        await expect(
            page.get_by_text("The domain name nowhere.invalid does not exist.")
        ).to_be_visible()
        assert await email.get_attribute("aria-invalid") == "true"

        await page.unroute(SUBSCRIPTIONS)
        calls: list[str] = []
        await page.route(SUBSCRIPTIONS, refuse(429, waiting, {"Retry-After": "120"}))
        page.on("request", lambda r: calls.append(r.url) if SUBSCRIPTIONS.match(r.url) else None)
        await email.fill("busy@example.com")
        await button.click()
        told = page.get_by_text("Please try again in 2 minutes.")
        await expect(told).to_be_visible()
        # Sending again before then does not hammer the service: the box says it again.
        await page.evaluate(shadow("root.querySelector('[role=status]').textContent = ''"))
        await button.click()
        await expect(told).to_be_visible()
        assert len(calls) == 1

    # A German box does not show the service's English: its own words, with the time.
    async with site(settings, slug="de", attributes='data-trigger="immediate" data-lang="de"') as s:
        page = await open_article(browser, s.article.url + "/")
        email = page.get_by_label("E-Mail-Adresse")
        button = page.get_by_role("button", name="Abonnieren")
        await page.route(SUBSCRIPTIONS, refuse(429, waiting, {"Retry-After": "1"}))
        await email.fill("eilig@example.com")
        await button.click()
        await expect(
            page.get_by_text(
                re.compile(r"Zu viele Versuche\. Bitte versuchen Sie es nach \d\d:\d\d Uhr")
            )
        ).to_be_visible()
        await page.unroute(SUBSCRIPTIONS)
        await page.route(SUBSCRIPTIONS, refuse(422, wrong))
        await page.wait_for_timeout(1100)  # Retry-After: 1
        await button.click()
        await expect(
            page.get_by_text("Bitte geben Sie eine gültige E-Mail-Adresse ein.")
        ).to_be_visible()


# 4. Another language ---------------------------------------------------------------------


async def test_data_lang_gives_a_german_box_consent_included(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings, attributes='data-trigger="immediate" data-lang="de"') as s:
        page = await open_article(browser, s.article.url + "/")
        dialog = page.get_by_role("dialog", name="Unser Newsletter")
        await expect(dialog).to_be_visible()
        assert await dialog.get_attribute("lang") == "de"
        await expect(
            dialog.get_by_text("Mit dem Abonnieren willigen Sie ein, Frühstücks-Briefing")
        ).to_be_visible()
        await expect(page.get_by_role("button", name="Abonnieren")).to_be_visible()
        assert await dialog.get_by_text("By subscribing").count() == 0


# 5. A site the list does not allow -------------------------------------------------------


async def test_a_site_the_list_does_not_allow_shows_no_box_and_tells_its_owner(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings, allowed=False) as s:
        page = await open_article(browser, s.article.url + "/")
        async with page.expect_console_message(lambda m: m.type == "error") as caught:
            await page.reload()
        assert (await caught.value).text == (
            f"[newsletter] {s.article.url} is not allowed to collect signups for the list daily "
            "(add it to the list's allowed origins): the box is not shown."
        )
        await page.wait_for_timeout(300)
        assert await page.locator("div[data-newsletter]").count() == 0
        assert await page.evaluate("window.__events.map(e => e[0])") == ["error"]


# 6. Success, focus and Escape ------------------------------------------------------------

BEFORE = """document.querySelector('article').insertAdjacentHTML('afterbegin',
    '<button id="before">Read later</button>')"""


async def test_success_is_a_view_of_its_own_announced_and_focus_comes_back(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings) as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(box(page)).to_be_visible()
        await page.evaluate(BEFORE)
        await page.focus("#before")
        # Escape elsewhere on the page is the page's business, not a "close the box".
        await page.keyboard.press("Escape")
        await page.wait_for_timeout(200)
        await expect(box(page)).to_be_visible()

        live = await page.evaluate_handle(shadow("root.querySelector('[role=status]')"))
        assert await live.get_attribute("aria-live") == "polite"
        await page.get_by_label("Email address").fill("done@example.com")
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Almost done")
        await expect(dialog.get_by_role("heading", name="Almost done")).to_be_visible()
        await expect(dialog.get_by_text("Almost done! Check your inbox")).to_be_visible()
        await expect(dialog.get_by_text("The best stories")).to_have_count(0)
        await expect(page.get_by_label("Email address")).to_have_count(0)
        # Announced by the live region that was there from the start.
        announced = await live.evaluate("n => n.isConnected && n.textContent")
        assert announced.startswith("Almost done! Check your inbox")
        assert await page.evaluate(shadow("root.activeElement.textContent")) == "Almost done"
        await smtp.wait_for(1)
        await page.keyboard.press("Escape")
        await expect(box(page)).to_have_count(0)
        assert await page.evaluate("document.activeElement.id") == "before"

        # Closed with the close button: focus goes back too.
        other = await open_article(browser, s.article.url + "/")
        await expect(box(other)).to_be_visible()
        await other.evaluate(BEFORE)
        await other.focus("#before")
        await other.get_by_label("Email address").focus()
        await other.get_by_role("button", name="Close").click()
        await expect(box(other)).to_have_count(0)
        assert await other.evaluate("document.activeElement.id") == "before"


# 7. Phones ------------------------------------------------------------------------------


async def test_on_phones_the_box_is_compact_with_even_margins(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings) as s:
        for width, height, most in [(390, 844, 0.25), (320, 568, 0.33)]:
            page = await open_article(
                browser,
                s.article.url + "/",
                viewport={"width": width, "height": height},
                reduced_motion="reduce",
                **PHONE,
            )
            await expect(box(page)).to_be_visible()
            size = await box(page).bounding_box()
            assert size is not None
            share = size["height"] / height
            await page.screenshot(path=str(ARTIFACTS / f"widget-phone-{width}.png"))
            assert share <= most, f"{width}x{height}: covers {share:.0%} of the screen"
            left, right = size["x"], width - size["x"] - size["width"]
            assert abs(left - 8) < 0.5 and abs(right - 8) < 0.5, (left, right)
            await expect(page.get_by_label("Email address")).to_be_visible()
            await expect(page.get_by_role("button", name="Subscribe")).to_be_visible()
            await page.context.close()


async def test_a_site_can_keep_the_box_off_small_screens(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings, attributes='data-trigger="immediate" data-min-width="600"') as s:
        phone = await open_article(
            browser, s.article.url + "/", viewport={"width": 390, "height": 844}, **PHONE
        )
        await phone.wait_for_timeout(800)
        assert await phone.locator("div[data-newsletter]").count() == 0
        assert await phone.evaluate("window.__events") == []
        desktop = await open_article(
            browser, s.article.url + "/", viewport={"width": 1280, "height": 800}
        )
        await expect(box(desktop)).to_be_visible()


# 8. High contrast and contrast ----------------------------------------------------------


def luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"[\d.]+", css)[:3])
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


async def test_high_contrast_mode_shows_the_box_edge_and_the_button(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings) as s:
        page = await open_article(browser, s.article.url + "/", forced_colors="active")
        await expect(box(page)).to_be_visible()
        edges = await page.evaluate(
            shadow(
                """(() => {
                const probe = document.createElement('i');
                probe.style.color = 'CanvasText';
                root.append(probe);
                const text = getComputedStyle(probe).color;
                const b = getComputedStyle(root.querySelector('.box'));
                const go = getComputedStyle(root.querySelector('button[type=submit]'));
                return {text, box: [b.borderTopStyle, b.borderTopWidth, b.borderTopColor],
                        button: [go.borderTopStyle, go.borderTopWidth]};
            })()"""
            )
        )
        assert edges["box"][0] == "solid" and edges["box"][1] != "0px", edges
        assert edges["box"][2] == edges["text"], edges
        assert edges["button"][0] == "solid" and edges["button"][1] != "0px", edges


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_input_border_and_focus_ring_stand_out_three_to_one(
    browser: Browser, settings: Settings, theme: str
) -> None:
    async with site(settings, attributes=f'data-trigger="immediate" data-theme="{theme}"') as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(box(page)).to_be_visible()
        await page.keyboard.press("Tab")  # keyboard focus: the ring shows
        await expect(page.get_by_label("Email address")).to_be_focused()
        colours = await page.evaluate(
            shadow(
                """(() => {
                const field = getComputedStyle(root.querySelector('input[type=email]'));
                return {box: getComputedStyle(root.querySelector('.box')).backgroundColor,
                        border: field.borderTopColor, ring: field.outlineColor,
                        ringStyle: field.outlineStyle};
            })()"""
            )
        )
        assert colours["ringStyle"] == "solid"
        assert contrast(colours["border"], colours["box"]) >= 3, colours
        assert contrast(colours["ring"], colours["box"]) >= 3, colours


# 9. Unusual themes, hidden tabs -----------------------------------------------------------


async def test_a_transformed_body_cannot_carry_the_box_off_screen(
    browser: Browser, settings: Settings
) -> None:
    theme = "<style>body { transform: translateZ(0); }</style>"
    async with site(settings, extra_head=theme) as s:
        page = await open_article(
            browser, s.article.url + "/", viewport={"width": 1280, "height": 800}
        )
        await expect(box(page)).to_be_visible()
        await page.wait_for_timeout(400)  # the slide-in
        size = await box(page).bounding_box()
        assert size is not None
        assert size["x"] >= 0 and size["x"] + size["width"] <= 1280, size
        assert size["y"] >= 0 and size["y"] + size["height"] <= 800, size


async def test_the_scroll_trigger_waits_when_the_theme_scrolls_the_body(
    browser: Browser, settings: Settings
) -> None:
    theme = "<style>html, body { height: 100%; overflow: auto; }</style>"
    async with site(
        settings, extra_head=theme, attributes='data-trigger="scroll" data-scroll="60"'
    ) as s:
        page = await open_article(browser, s.article.url + "/")
        await page.wait_for_timeout(800)
        assert await box(page).count() == 0, "not read yet"
        await page.evaluate("document.body.scrollTop = 100")
        await page.wait_for_timeout(300)
        assert await box(page).count() == 0, "a few lines read are not 60 percent"
        await page.evaluate("document.body.scrollTop = document.body.scrollHeight")
        await expect(box(page)).to_be_visible()


async def test_the_delay_counts_only_while_the_page_is_in_view(
    browser: Browser, settings: Settings
) -> None:
    hidden_tab = """
        window.__hidden = true;
        Object.defineProperty(document, "hidden", {configurable: true, get: () => window.__hidden});
        Object.defineProperty(document, "visibilityState", {configurable: true,
          get: () => window.__hidden ? "hidden" : "visible"});
        window.__show = () => { window.__hidden = false;
          document.dispatchEvent(new Event("visibilitychange")); };"""
    async with site(settings, attributes='data-trigger="delay" data-delay="1"') as s:
        page = await opened(browser, s.article.url + "/", init=hidden_tab)
        await page.wait_for_timeout(1800)
        assert await box(page).count() == 0, "opened in a background tab: not yet"
        await page.evaluate("window.__show()")
        await page.wait_for_timeout(300)
        assert await box(page).count() == 0, "a second in view, not at once"
        await expect(box(page)).to_be_visible(timeout=5000)


# 10. Inline, without a shift ------------------------------------------------------------

LAYOUT_SHIFT = """
    window.__cls = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
    }).observe({type: "layout-shift", buffered: true});"""


# What embedding.md tells site owners to put on the element the form goes into.
RESERVED = """<style>#newsletter-inline { min-height: 280px; }
@media (max-width: 480px) { #newsletter-inline { min-height: 220px; } }</style>"""


async def test_an_inline_form_in_the_first_screen_does_not_shift_the_page(
    browser: Browser, settings: Settings
) -> None:
    async with site(
        settings,
        attributes='data-target="#newsletter-inline"',
        inline=True,
        extra_head=RESERVED,
    ) as s:
        for viewport in [{"width": 1280, "height": 1200}, {"width": 390, "height": 1400}]:
            page = await opened(browser, s.article.url + "/", init=LAYOUT_SHIFT, viewport=viewport)
            region = page.locator("#newsletter-inline").get_by_role("region")
            await expect(region).to_be_visible()
            size = await region.bounding_box()
            assert size is not None and size["y"] + size["height"] < viewport["height"]
            await page.wait_for_timeout(500)
            cls = await page.evaluate("window.__cls")
            assert cls < 0.001, f"{viewport}: layout shift {cls:.4f}"
            await page.context.close()


async def test_an_inline_form_keeps_its_place_while_its_settings_load(
    browser: Browser, settings: Settings
) -> None:
    """Without the page's own reservation the form still takes its place as soon as the
    script runs: the settings arriving later (here after a second) move nothing."""
    async with site(settings, attributes='data-target="#newsletter-inline"', inline=True) as s:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 1200})
        page = await ctx.new_page()
        await page.add_init_script("""
            window.__shifts = [];
            new PerformanceObserver((list) => {
              for (const e of list.getEntries()) window.__shifts.push([e.startTime, e.value]);
            }).observe({type: "layout-shift", buffered: true});
            document.addEventListener("newsletter:shown",
              () => { window.__shown = performance.now(); });""")

        async def slow(route: Route) -> None:
            await asyncio.sleep(1)
            await route.continue_()

        await page.route(re.compile(r".*/widget(\?.*)?$"), slow)
        await page.goto(s.article.url + "/")
        await expect(page.locator("#newsletter-inline").get_by_role("region")).to_be_visible()
        await page.wait_for_timeout(500)
        late = await page.evaluate(
            "window.__shifts.filter(([t]) => t > window.__shown - 100).map(([, v]) => v)"
        )
        assert sum(late) < 0.001, late
