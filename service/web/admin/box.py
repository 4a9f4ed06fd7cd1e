"""What the subscribe box did, for editors: the funnel, a chart over time, the pages and
the variants of a list (``/admin/lists/{slug}/box``), the pages as CSV, and the same
figures in the admin API (``/api/v1/admin/lists/{slug}/box``).

Each answer first writes this process's counts not yet written, so it is up to date.
"""

from __future__ import annotations

import csv
import io

from markupsafe import Markup, escape
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.auth.sessions import Principal
from service.box_stats import BoxReport, box_report, check_device, date_range
from service.box_tests import FORM_VARIANTS, MIN_VIEWS, list_tests, results
from service.errors import Refusal
from service.lists import get_list
from service.models import MailingList, utcnow
from service.state import AppRequest
from service.web.admin.guard import protected
from service.web.admin.render import admin_page

__all__ = ["routes"]

ORDERS = ("count", "conversion")


async def _report(request: AppRequest) -> tuple[MailingList, BoxReport, str]:
    slug = request.path_params["slug"]
    mailing_list = await get_list(request.state["db"], slug)
    if mailing_list is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    params = request.query_params
    order = params.get("order") or "count"
    try:
        start, end = date_range(params.get("from"), params.get("to"), utcnow().date())
        device = check_device(params.get("device"))
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    except ValueError as exc:
        raise Refusal(str(exc), status=422) from None
    await request.state["box_counter"].flush()
    report = await box_report(request.state["db"], mailing_list.id, start, end, device)
    return mailing_list, report, order


def _chart(report: BoxReport) -> Markup:
    """Views, signups and confirmations per day as an inline SVG (no script needed)."""
    first, last = report.start.toordinal(), report.end.toordinal()
    days = [report.start.fromordinal(n) for n in range(first, last + 1)]
    width, height, pad = 720, 160, 24
    series = (("shown", "#9ca3af"), ("submitted", "#1a56db"), ("confirmed", "#059669"))
    values = {d: report.days.get(d) for d in days}
    top = max([f.counts[e] for f in values.values() if f for e, _ in series] + [1])
    slot = (width - pad) / len(days)
    bar = max(1.0, slot / 3 - 1)
    parts = [
        f'<svg viewBox="0 0 {width} {height + 20}" role="img" width="100%" '
        'aria-label="Views, signups and confirmations per day">',
        f'<text x="0" y="12" font-size="11" fill="currentColor">{top}</text>',
    ]
    for i, d in enumerate(days):
        x = pad + i * slot
        funnel = values[d]
        for j, (event, colour) in enumerate(series):
            value = funnel.counts[event] if funnel else 0
            h = (height - 16) * value / top
            parts.append(
                f'<rect x="{x + j * (bar + 1):.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{d.isoformat()} {event}: {value}'
                "</title></rect>"
            )
        if i % 7 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height + 14}" font-size="11" '
                f'fill="currentColor">{escape(d.strftime("%d %b"))}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from numbers and escaped dates


async def box_page(request: AppRequest, principal: Principal) -> Response:
    mailing_list, report, order = await _report(request)
    db = request.state["db"]
    tests = [await results(db, test) for test in await list_tests(db, mailing_list)]
    return admin_page(
        request,
        principal,
        "admin/box.html",
        {
            "ml": mailing_list,
            "report": report,
            "order": order,
            "pages": report.pages_by(order),
            "chart": _chart(report),
            "query": request.url.query,
            "tests": tests,
            "labels": {
                v["key"]: f"{t['name']}: {v['label']}" for t in tests for v in t["variants"]
            },
            "running": any(test["ended_at"] is None for test in tests),
            "form_variants": range(1, FORM_VARIANTS + 1),
            "min_views": MIN_VIEWS,
        },
        section="lists",
    )


async def box_api(request: AppRequest, principal: Principal) -> Response:
    mailing_list, report, order = await _report(request)
    body = {"list": mailing_list.slug, **report.as_json(order)}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet must not run a page path as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def pages_csv(request: AppRequest, principal: Principal) -> Response:
    mailing_list, report, order = await _report(request)
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["page", "shown", "dismissed", "submitted", "accepted", "confirmed"]
    writer.writerow([*columns, "submitted_rate", "confirmed_rate"])
    for page, funnel in report.pages_by(order):
        counts = [funnel.counts[c] for c in columns[1:]]
        rates = [funnel.rate("submitted"), funnel.rate("confirmed")]
        writer.writerow([_cell(page), *counts, *("" if r is None else f"{r:.4f}" for r in rates)])
    name = f"{mailing_list.slug}-pages-{report.start}-{report.end}.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


routes = [
    Route("/admin/lists/{slug}/box", protected(box_page), methods=["GET"]),
    Route("/admin/lists/{slug}/box/pages.csv", protected(pages_csv), methods=["GET"]),
    Route("/api/v1/admin/lists/{slug}/box", protected(box_api), methods=["GET"]),
]
