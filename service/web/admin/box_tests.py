"""A/B tests of a list's box, for editors: start one, read its results, end it, promote a
variant in one click (the admin pages' forms and ``/api/v1/admin/lists/{slug}/tests``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.auth.sessions import Principal
from service.box_tests import FORM_VARIANTS, end_test, list_tests, promote, results, start_test
from service.errors import Refusal
from service.lists import get_list
from service.models import MailingList
from service.state import AppRequest
from service.web.admin.guard import protected
from service.web.bodies import BadBody, parse_json_object

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}


async def _list(request: AppRequest) -> MailingList:
    slug = request.path_params["slug"]
    mailing_list = await get_list(request.state["db"], slug)
    if mailing_list is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    return mailing_list


def _test_id(request: AppRequest) -> int:
    value = request.path_params["test_id"]
    if not value.isdigit() or len(value) > 9:
        raise Refusal("No such test on this list.", status=404)
    return int(value)


async def _start(request: AppRequest, ml: MailingList, data: dict[str, Any]) -> dict[str, Any]:
    try:
        test = await start_test(
            request.state["db"], ml, data.get("name", ""), data.get("control_weight", 1),
            data.get("variants"),
        )  # fmt: skip
    except ValueError as exc:
        raise Refusal(str(exc), status=422) from None
    request.state["lists"].clear()
    return await results(request.state["db"], test)


async def _json(request: AppRequest) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    return parse_json_object(await request.body(), example='{"name": "Shorter title"}')


async def tests_api(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    db = request.state["db"]
    if request.method == "GET":
        await request.state["box_counter"].flush()
        found = [await results(db, test) for test in await list_tests(db, ml)]
        return JSONResponse({"list": ml.slug, "tests": found}, headers=NO_STORE)
    return JSONResponse(await _start(request, ml, await _json(request)), 201, NO_STORE)


async def end_api(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    test = await end_test(request.state["db"], ml, _test_id(request))
    request.state["lists"].clear()
    return JSONResponse(await results(request.state["db"], test), headers=NO_STORE)


async def promote_api(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    variant = (await _json(request)).get("variant")
    if not isinstance(variant, str) or not variant:
        raise Refusal("variant: give the key of the variant to promote.", status=422)
    test = await promote(request.state["db"], ml, _test_id(request), variant)
    request.state["lists"].clear()
    return JSONResponse(await results(request.state["db"], test), headers=NO_STORE)


# The admin page's forms: each answers with a redirect back to the box's page.


def _back(ml: MailingList, done: str) -> Response:
    return RedirectResponse(f"/admin/lists/{ml.slug}/box?done={done}#tests", status_code=303)


async def start_form(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    form = await request.form(max_files=0, max_fields=40)
    variants = []
    for n in range(1, FORM_VARIANTS + 1):
        fields = ("label", "weight", "title", "text", "button", "trigger")
        row = {f: str(form.get(f"{f}_{n}", "")).strip() for f in fields}
        if any(row[f] for f in ("title", "text", "button", "trigger")):
            variants.append({k: v for k, v in row.items() if v})
    data = {
        "name": str(form.get("name", "")),
        "control_weight": str(form.get("control_weight", "1")),
        "variants": variants,
    }
    await _start(request, ml, data)
    return _back(ml, "test-started")


async def end_form(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    await end_test(request.state["db"], ml, _test_id(request))
    request.state["lists"].clear()
    return _back(ml, "test-ended")


async def promote_form(request: AppRequest, principal: Principal) -> Response:
    ml = await _list(request)
    form = await request.form(max_files=0, max_fields=4)
    await promote(request.state["db"], ml, _test_id(request), str(form.get("variant", "")))
    request.state["lists"].clear()
    return _back(ml, "test-promoted")


routes = [
    Route("/api/v1/admin/lists/{slug}/tests", protected(tests_api), methods=["GET", "POST"]),
    Route("/api/v1/admin/lists/{slug}/tests/{test_id}/end", protected(end_api), methods=["POST"]),
    Route(
        "/api/v1/admin/lists/{slug}/tests/{test_id}/promote",
        protected(promote_api),
        methods=["POST"],
    ),
    Route("/admin/lists/{slug}/box/tests", protected(start_form), methods=["POST"]),
    Route("/admin/lists/{slug}/box/tests/{test_id}/end", protected(end_form), methods=["POST"]),
    Route(
        "/admin/lists/{slug}/box/tests/{test_id}/promote",
        protected(promote_form),
        methods=["POST"],
    ),
]
