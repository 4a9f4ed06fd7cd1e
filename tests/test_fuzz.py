"""Schemathesis fuzzes every operation of the OpenAPI document against the running app.

Checks: all of Schemathesis' (``--checks all``): no 5xx, every response (status, content
type, headers, body) is one the document describes, what the document forbids is refused
and what it allows is accepted, and more; the admin API is fuzzed with an API token, and
the stateful phase follows the links between operations. The run is bounded (examples per
operation, a fixed seed) to fit in CI; it runs against a throwaway database, so destructive
operations are fuzzed too.
NEWSLETTER_TEST_FUZZ_EXAMPLES raises the bound for a longer hunt.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from support import SMTPServer, make_list, serve_app

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.settings import Settings
from service.web.openapi import document

CHECKS = ("all",)
# Rules a schema cannot state (each operation's description and its 422 say them): the
# mailchimp and listmonk layouts take one status (listmonk one list too), a confirmed import
# needs a reason, and a signup's pow_challenge and form_stamp must be ones the service
# issued (any string fits their schema; a made-up one is refused); lists named must exist
# and attribute names be printable; a blocklist entry is an address or a domain; bulk
# additions and moves need a target list; a box report covers at most 366 days; an A/B test
# needs a name and variants that differ, and promotes one of its own; a welcome email has
# both a subject and a text, or neither; a box event's variant is one of the list's.
# For those operations only, a schema-valid request may be refused with 422.
_ALSO_422 = '["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]'
CONFIG = "".join(
    f"""
[[operations]]
include-name = "{name}"
checks.positive_data_acceptance.expected-statuses = {_ALSO_422}
"""
    for name in (
        "POST /api/v1/lists/{slug}/subscriptions",
        "GET /api/v1/admin/exports",
        "POST /api/v1/admin/lists/{slug}/imports",
        "POST /api/v1/admin/subscribers",
        "PATCH /api/v1/admin/subscribers/{subscriber_id}",
        "POST /api/v1/admin/subscribers/bulk",
        "POST /api/v1/admin/blocklist",
        "GET /api/v1/admin/lists/{slug}/box",
        "POST /api/v1/admin/lists/{slug}/tests",
        "POST /api/v1/admin/lists/{slug}/tests/{test_id}/promote",
        "PUT /api/v1/admin/lists/{slug}/welcome",
        "POST /api/v1/lists/{slug}/events",
    )
)
EXAMPLES = int(os.environ.get("NEWSLETTER_TEST_FUZZ_EXAMPLES", "5"))
SEED = os.environ.get("NEWSLETTER_TEST_FUZZ_SEED", "20250101")
DEADLINE = 300  # seconds: a hung run fails rather than stalls CI


def schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert found, "Schemathesis comes with the test extra: pip install -e '.[test]'"
    return found


@pytest.mark.scenario
async def test_every_operation_answers_as_documented(
    settings: Settings, smtp: SMTPServer, tmp_path: Path
) -> None:
    await make_list(settings, origins=["https://www.example.com"])
    async with serve_app(settings, reachable=True) as app:
        await create_user(app.db, "fuzzer", "correct horse battery")
        token = await create_token(app.db, "fuzzer", "fuzz")
        for i in range(3):  # people to find, page through, unsubscribe and erase
            response = await app.client.post(
                "/api/v1/lists/daily/subscriptions", json={"email": f"reader{i}@example.com"}
            )
            assert response.status_code == 202
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            schemathesis(),
            f"--config-file={config}",
            "run",
            f"{app.url}/api/v1/openapi.json",
            f"--checks={','.join(CHECKS)}",
            f"--max-examples={EXAMPLES}",
            f"--seed={SEED}",
            "--phases=examples,coverage,fuzzing,stateful",
            "--workers=1",
            "--request-timeout=10",
            "--no-color",
            "--header",
            f"Authorization: Bearer {token}",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), DEADLINE)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"the fuzz run took over {DEADLINE} s") from None
        elapsed = time.monotonic() - started
    report = output.decode(errors="replace")
    print(report, f"\nfuzz run: {elapsed:.1f} s", sep="")
    assert process.returncode == 0, report[-30000:]
    # The token has every scope but admin: the admin-only operations are checked too, for
    # their documented 403 (with admin, a fuzzed DELETE could revoke the fuzzer's own token).
    operations = sum(len(methods) for methods in document(app.url)["paths"].values())
    assert re.search(rf"Tested:\s+{operations}\b", report), report[-3000:]
