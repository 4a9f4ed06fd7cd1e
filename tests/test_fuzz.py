"""Schemathesis fuzzes every operation of the OpenAPI document against the running app.

Checks: no 5xx, and every response (status, content type, headers, body) is one the
document describes. The run is bounded (examples per operation, a fixed seed) to fit in
CI; it runs against a throwaway database, so destructive operations are fuzzed too.
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

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
EXAMPLES = int(os.environ.get("NEWSLETTER_TEST_FUZZ_EXAMPLES", "15"))
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
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            schemathesis(),
            "run",
            f"{app.url}/api/v1/openapi.json",
            f"--checks={','.join(CHECKS)}",
            f"--max-examples={EXAMPLES}",
            f"--seed={SEED}",
            "--phases=examples,coverage,fuzzing",
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
