"""The blocklist in the admin: a page to add and remove entries, and its API
(``/api/v1/admin/blocklist``). The rules are in ``service.blocklist``."""

from __future__ import annotations

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service import blocklist
from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.errors import Refusal
from service.state import AppRequest
from service.web.admin.guard import protected
from service.web.admin.render import admin_page
from service.web.bodies import BadBody, parse_json_object
from service.web.params import row_id

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
MAX_ENTRIES = 1000  # per request: a paste of a whole file of addresses is an import's job


def entry_json(entry: blocklist.Entry) -> dict[str, object]:
    return {
        "id": entry.id,
        "value": entry.value,
        "kind": entry.kind,
        "note": entry.note,
        "created_by": entry.created_by,
        "created_at": entry.created_at.isoformat(),
    }


async def blocklist_page(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    error, typed, note, added = "", "", "", -1
    if request.method == "POST":
        data = await request.form(max_files=0, max_fields=5)
        typed, note = str(data.get("entries", "")), str(data.get("note", ""))
        lines = [line for line in typed.replace(",", "\n").splitlines() if line.strip()]
        try:
            if len(lines) > MAX_ENTRIES:
                raise ValueError(f"at most {MAX_ENTRIES} entries at a time")
            with along_with(entry(principal.actor, "blocklist.add", entries=len(lines))):
                added = len(await blocklist.add(db, lines, admin=principal.username, note=note))
        except ValueError as exc:
            error = str(exc)
        else:
            return RedirectResponse(f"/admin/blocklist?added={added}", status_code=303)
    query = request.query_params.get("q", "")[:200]
    shown_added = request.query_params.get("added", "")
    return admin_page(
        request,
        principal,
        "admin/blocklist.html",
        {
            "entries": await blocklist.entries(db, query),
            "q": query,
            "typed": typed,
            "note": note,
            "error": error,
            "added": int(shown_added) if shown_added.isdigit() else -1,
            "removed": request.query_params.get("removed", ""),
        },
        section="blocklist",
        status=422 if error else 200,
    )


async def blocklist_remove(request: AppRequest, principal: Principal) -> Response:
    entry_id = row_id(str(request.path_params["entry_id"]))
    with along_with(entry(principal.actor, "blocklist.remove", str(entry_id or ""))):
        removed = await blocklist.remove(request.state["db"], entry_id) if entry_id else None
    # Removing twice (a reload, a second tab) is harmless: the page simply lacks the entry.
    return RedirectResponse(f"/admin/blocklist?removed={1 if removed else 0}", status_code=303)


async def blocklist_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    if request.method == "GET":
        found = await blocklist.entries(db, request.query_params.get("q", "")[:200])
        return JSONResponse({"items": [entry_json(e) for e in found]}, headers=NO_STORE)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    data = parse_json_object(
        await request.body(), example='{"entries": ["spam.example", "someone@example.com"]}'
    )
    texts = data.get("entries")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
        raise Refusal(
            "entries must be a list of addresses and domains.",
            status=422,
            fields={"entries": "must be a non-empty list of strings"},
        )
    if len(texts) > MAX_ENTRIES:
        raise Refusal(f"At most {MAX_ENTRIES} entries at a time.", status=422)
    note = data.get("note", "")
    if not isinstance(note, str):
        raise Refusal("note must be text.", status=422, fields={"note": "must be text"})
    try:
        with along_with(entry(principal.actor, "blocklist.add", entries=len(texts))):
            added = await blocklist.add(db, texts, admin=principal.username, note=note)
    except ValueError as exc:
        raise Refusal(f"{exc}.", status=422, fields={"entries": str(exc)}) from None
    return JSONResponse(
        {"added": [entry_json(e) for e in added]}, status_code=201, headers=NO_STORE
    )


async def blocklist_entry_endpoint(request: AppRequest, principal: Principal) -> Response:
    entry_id = row_id(str(request.path_params["entry_id"]))
    with along_with(entry(principal.actor, "blocklist.remove", str(entry_id or ""))):
        removed = await blocklist.remove(request.state["db"], entry_id) if entry_id else None
    if removed is None:
        raise Refusal("No such blocklist entry.", status=404)
    return Response(status_code=204)


routes = [
    Route("/admin/blocklist", protected(blocklist_page), methods=["GET", "POST"]),
    Route("/admin/blocklist/{entry_id}/remove", protected(blocklist_remove), methods=["POST"]),
    Route("/api/v1/admin/blocklist", protected(blocklist_endpoint), methods=["GET", "POST"]),
    Route(
        "/api/v1/admin/blocklist/{entry_id}",
        protected(blocklist_entry_endpoint),
        methods=["DELETE"],
    ),
]
