"""The public endpoints keep a list for a moment; the admin side's changes show at once."""

from __future__ import annotations

from support import SUBSCRIBE, SMTPServer, make_list, serve_app

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.lists import update_list
from service.settings import Settings


async def test_lists_are_cached_briefly_and_admin_changes_apply_at_once(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(list_cache_ttl=60.0)) as app:
        first = await app.client.post(SUBSCRIBE, json={"email": "a@example.com"})
        assert first.status_code == 202

        # Changed behind the server's back (another process): not seen within the TTL.
        await update_list(app.db, "daily", {"consentCheckbox": "true"})
        stale = await app.client.post(SUBSCRIBE, json={"email": "b@example.com"})
        assert stale.status_code == 202

        # Changed through this server's admin API: seen by the very next signup.
        await create_user(app.db, "alice", "correct horse battery staple")
        token = await create_token(app.db, "alice", "tests")
        changed = await app.client.patch(
            "/api/v1/admin/lists/daily",
            json={"consentCheckbox": "true"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert changed.status_code == 200, changed.text
        fresh = await app.client.post(SUBSCRIBE, json={"email": "c@example.com"})
        assert fresh.status_code == 422 and "consent" in fresh.json()["fields"]
