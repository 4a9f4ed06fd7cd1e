"""Exports (streamed downloads) and imports (CSV uploads), for the admin pages and the API.

An export is streamed as it is read from the database: nothing holds the whole file. An
upload is spooled to a temporary file by the form parser (or by ``_spool`` for a raw
``text/csv`` body) and read from there row by row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePath
from typing import IO, Any

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service.audit import entry, record
from service.auth.sessions import Principal
from service.errors import Refusal
from service.lists import all_lists, get_list
from service.models import MailingList, utcnow
from service.state import AppRequest
from service.transfer.exports import ExportQuery, check_format, export_chunks, export_filename
from service.transfer.formats import FORMATS, STATUSES
from service.transfer.formats import media_type as export_media_type
from service.transfer.imports import ImportOptions, ImportReport, import_rows
from service.web.admin.guard import protected
from service.web.admin.render import admin_page
from service.web.refusals import api_error

__all__ = ["MAX_IMPORT_BYTES", "body_limit", "routes"]

MAX_IMPORT_BYTES = 256 * 1024 * 1024
IMPORT_PATHS = ("/admin/imports",)


def body_limit(path: str, default: int) -> int:
    """The body size allowed at ``path``: uploads of whole lists may be large."""
    if path in IMPORT_PATHS or (path.startswith("/api/v1/admin/") and path.endswith("/imports")):
        return MAX_IMPORT_BYTES
    return default


def _day(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise Refusal(f"{name} must be a date like 2025-01-31.", status=422) from None


async def export_request(request: AppRequest) -> tuple[ExportQuery, str, bool]:
    """The export asked for by the query string; a Refusal if it makes no sense."""
    params = request.query_params
    fmt = params.get("format", "csv") or "csv"
    if fmt not in FORMATS:
        raise Refusal(f"format must be one of {', '.join(FORMATS)}.", status=422)
    statuses = {s.strip() for value in params.getlist("status") for s in value.split(",")}
    statuses.discard("")
    if "all" in statuses:
        statuses = set(STATUSES)
    slug = params.get("list", "") or None
    if slug is not None and await get_list(request.state["db"], slug) is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    until = _day(params.get("until", ""), "until")
    try:
        query = ExportQuery(
            list_slug=slug,
            statuses=frozenset(statuses or {"confirmed"}),
            since=_day(params.get("since", ""), "since"),
            until=until + timedelta(days=1) if until else None,  # the "until" day is included
        )
        check_format(query, fmt)
    except ValueError as exc:
        raise Refusal(f"{exc}.", status=422) from None
    return query, fmt, params.get("bom", "") in {"1", "true", "yes", "on"}


async def stream_export(
    request: AppRequest, principal: Principal, query: ExportQuery, fmt: str, bom: bool
) -> Response:
    name = export_filename(query, fmt, utcnow().date())
    await record(
        request.state["db"],
        entry(
            principal.actor,
            "export",
            query.list_slug or "all lists",
            format=fmt,
            statuses=sorted(query.statuses),
            since=query.since.date().isoformat() if query.since else None,
            until=query.until.date().isoformat() if query.until else None,
        ),
    )
    return StreamingResponse(
        export_chunks(request.state["db"], query, fmt, bom=bom),
        media_type=export_media_type(fmt),
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _exports_page(
    request: AppRequest,
    principal: Principal,
    *,
    summary: str = "",
    error: str = "",
    status: int = 200,
    invalid: int = 0,
    chosen: Mapping[str, Any] | None = None,
) -> Response:
    return admin_page(
        request,
        principal,
        "admin/exports.html",
        {
            "lists": await all_lists(request.state["db"]),
            "summary": summary,
            "error": error,
            "invalid": invalid,  # rows left out: the import's summary is not a success
            "chosen": _chosen(chosen or {}),
        },
        section="exports",
        status=status,
    )


def _chosen(form: Mapping[str, Any]) -> dict[str, object]:
    """What the import form was sent with, to show it again as chosen (not the file)."""
    return {
        "list": str(form.get("list", "") or ""),
        "mode": str(form.get("mode", "") or ""),
        "reason": str(form.get("reason", "") or "")[:500],
        "update_existing": _yes(form.get("update_existing", "")),
        "dry_run": _yes(form.get("dry_run", "")),
    }


async def download(request: AppRequest, principal: Principal) -> Response:
    try:
        query, fmt, bom = await export_request(request)
    except Refusal as exc:
        return await _exports_page(request, principal, error=exc.message, status=exc.status)
    return await stream_export(request, principal, query, fmt, bom)


async def export_endpoint(request: AppRequest, principal: Principal) -> Response:
    try:
        query, fmt, bom = await export_request(request)
    except Refusal as exc:
        return api_error(exc.status, exc.message)
    return await stream_export(request, principal, query, fmt, bom)


def _options(
    request: AppRequest, fields: Mapping[str, Any], principal: Principal, source: str
) -> ImportOptions:
    mode = str(fields.get("mode", "") or "double-opt-in")
    if mode not in {"double-opt-in", "confirmed"}:
        raise Refusal("mode must be double-opt-in or confirmed.", status=422)
    try:
        return ImportOptions(
            confirmed=mode == "confirmed",
            admin=principal.username,
            reason=str(fields.get("reason", ""))[:500],
            source=PurePath(source.replace("\\", "/")).name[:100] or "upload",
            dry_run=_yes(fields.get("dry_run", "")),
            update_existing=_yes(fields.get("update_existing", "")),
            confirmation_cap=request.state["settings"].rate_limit_confirmations,
        )
    except ValueError as exc:
        raise Refusal(str(exc), status=422) from None


def _yes(value: object) -> bool:
    return str(value).lower() in {"1", "true", "yes", "on"}


async def _run_import(
    request: AppRequest,
    principal: Principal,
    slug: str,
    binary: IO[bytes],
    options: ImportOptions,
) -> ImportReport:
    mailing_list = await get_list(request.state["db"], slug)
    if mailing_list is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    report = await _import(request, mailing_list, binary, options)
    if options.dry_run or not (report.changed or report.updated):
        return report  # nothing written, nothing to record
    # An import writes in batches: its entry, with what it did, comes after them.
    await record(
        request.state["db"],
        entry(
            principal.actor,
            "import",
            slug,
            source=options.source,
            rows=report.rows,
            changed=report.changed,
            updated=report.updated,
            invalid=len(report.errors) + report.more_errors,
        ),
    )
    return report


async def _import(
    request: AppRequest, mailing_list: MailingList, binary: IO[bytes], options: ImportOptions
) -> ImportReport:
    return await import_rows(
        request.state["db"],
        request.state["emails"],
        mailing_list,
        binary.read(),  # read and checked whole before anything is written
        options,
        addresses=request.state["subscriptions"].addresses,
        on_mail_queued=request.state["worker"].wake,
    )


async def upload(request: AppRequest, principal: Principal) -> Response:
    async with request.form(max_files=1, max_fields=10) as form:
        file = form.get("file")
        try:
            if not isinstance(file, UploadFile) or not file.filename:
                raise Refusal("Choose a CSV file to import.", status=422)
            options = _options(request, form, principal, file.filename)
            slug = str(form.get("list", ""))
            mailing_list = await get_list(request.state["db"], slug)
            report = await _run_import(request, principal, slug, file.file, options)
        except Refusal as exc:
            return await _exports_page(
                request, principal, error=exc.message, status=exc.status, chosen=form
            )
        chosen = _chosen(form)
    assert mailing_list is not None  # else _run_import refused
    summary = f"List: {mailing_list.name} ({mailing_list.slug})\n{report.summary()}"
    invalid = len(report.errors) + report.more_errors
    return await _exports_page(request, principal, summary=summary, invalid=invalid, chosen=chosen)


async def _spool(request: AppRequest) -> IO[bytes]:
    spooled = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned
    async for chunk in request.stream():
        spooled.write(chunk)
    spooled.seek(0)
    return spooled


async def import_endpoint(request: AppRequest, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            async with request.form(max_files=1, max_fields=10) as form:
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    raise Refusal("Send the CSV file as the form field 'file'.", status=422)
                options = _options(request, form, principal, file.filename or "upload")
                report = await _run_import(request, principal, slug, file.file, options)
        elif content_type in {"text/csv", "text/plain", "application/csv"}:
            options = _options(request, request.query_params, principal, "api upload")
            with await _spool(request) as body:
                report = await _run_import(request, principal, slug, body, options)
        else:
            raise Refusal(
                "Send the CSV file as text/csv, or as the field 'file' of a multipart form.",
                status=415,
            )
    except Refusal as exc:
        return api_error(exc.status, exc.message)
    return JSONResponse(report.as_json(), headers={"Cache-Control": "no-store"})


routes = [
    Route("/admin/exports/download", protected(download, "export"), methods=["GET"]),
    Route("/admin/imports", protected(upload), methods=["POST"]),
    Route("/api/v1/admin/exports", protected(export_endpoint, "export"), methods=["GET"]),
    Route("/api/v1/admin/lists/{slug}/imports", protected(import_endpoint), methods=["POST"]),
]
