"""Pages behind the links in emails. GET only shows; POST changes state.

Mail scanners (Outlook Safe Links and others) open every link in a message and some run
its scripts, so a GET never confirms or unsubscribes, and nothing submits by itself.
A link used before shows where things stand (confirmed already, or unsubscribed since,
with a button to subscribe again); tampered, unknown and expired unused links get the same
"not valid" page.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from service.models import SubscriptionStatus
from service.state import AppRequest
from service.subscriptions import LinkTarget
from service.web.caller import caller
from service.web.responses import TOKEN_PAGE_HEADERS, page

__all__ = ["routes"]

ONE_CLICK = "One-Click"


def _link_page(request: AppRequest, template: str, target: LinkTarget | None) -> Response:
    if target is None:
        return page(request, "pages/invalid_link.html", status=400, headers=TOKEN_PAGE_HEADERS)
    return page(
        request, template, {"target": target}, headers=TOKEN_PAGE_HEADERS, language=target.language
    )


CONFIRM_PAGES = {
    SubscriptionStatus.PENDING: "pages/confirm.html",
    SubscriptionStatus.CONFIRMED: "pages/confirmed.html",
    SubscriptionStatus.UNSUBSCRIBED: "pages/resubscribe.html",
}


async def confirm(request: AppRequest) -> Response:
    """A confirmation link: asks (GET), confirms (POST, then 303 back here, so a reload
    never posts again), and answers every harmless repeat with where things stand."""
    token = request.path_params["token"]
    state = request.state
    target = await state["subscriptions"].confirm_target(token)
    if target is not None and target.superseded:  # a newer email has the link that counts
        return _link_page(request, "pages/newer_link.html", target)
    if request.method == "GET" or target is None:
        page_for = CONFIRM_PAGES[target.status] if target is not None else ""
        return _link_page(request, page_for, target)
    if target.status == SubscriptionStatus.UNSUBSCRIBED:
        again = await state["subscriptions"].subscribe_again(token, caller(request))
        if again is None:
            return _link_page(request, "", None)
        thanks = f"/subscribe/{target.list_slug}/thanks"
        mailing_list = await state["lists"].get(target.list_slug)
        if mailing_list is not None and mailing_list.allowed_origins:
            # The way back: the list's own site (the old link knows no page).
            site = sorted(mailing_list.allowed_origins)[0] + "/"
            thanks += f"?back={quote(site, safe='')}"
        return RedirectResponse(thanks, status_code=303, headers=TOKEN_PAGE_HEADERS)
    done = await state["subscriptions"].confirm(token, caller(request))
    if done is not None and done.changed:
        state["metrics"].confirms.inc()
    if done is None:
        return _link_page(request, "", None)
    return RedirectResponse(request.url.path, status_code=303, headers=TOKEN_PAGE_HEADERS)


async def unsubscribe(request: AppRequest) -> Response:
    token = request.path_params["token"]
    subscriptions = request.state["subscriptions"]
    if request.method == "GET":
        target = await subscriptions.unsubscribe_target(token)
        return _link_page(request, "pages/unsubscribe.html", target)
    # RFC 8058: a mail provider POSTs "List-Unsubscribe=One-Click", with no cookies and no
    # page in between. Our own page's button posts the same form; both answer 200.
    method = "page"
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.form(max_files=0, max_fields=10)
        if form.get("List-Unsubscribe") == ONE_CLICK:
            method = "one-click"
    target = await subscriptions.unsubscribe(token, caller(request), method=method)
    if target is not None and target.changed:  # a repeat click is not a second unsubscribe
        request.state["metrics"].unsubscribes.labels(method).inc()
    return _link_page(request, "pages/unsubscribed.html", target)


async def home(request: AppRequest) -> Response:
    return page(
        request, "pages/home.html", {"catcher": request.state["settings"].uses_mail_catcher}
    )


async def robots(request: AppRequest) -> Response:
    return HTMLResponse(
        "User-agent: *\nDisallow: /confirm/\nDisallow: /unsubscribe/\n", media_type="text/plain"
    )


routes = [
    Route("/", home, methods=["GET"]),
    Route("/robots.txt", robots, methods=["GET"]),
    Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
    Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
]
