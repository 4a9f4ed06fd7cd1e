"""The hosted signup page posts to itself: a reload never posts twice, the reader finds
their way back to the site, and a mistake keeps what they typed."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

from support import Running, SMTPServer, visible

from service.lists import update_list

ARTICLE = "https://www.example.com/2026/12/park.html"


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, name
    return found[1]


async def test_a_signup_answers_303_to_a_result_page_with_the_way_back(
    app: Running, smtp: SMTPServer
) -> None:
    form = await app.client.get("/subscribe/daily", headers={"Referer": ARTICLE})
    assert form.status_code == 200
    assert hidden(form.text, "back") == ARTICLE
    sent = await app.client.post(
        "/subscribe/daily",
        data={
            "email": "hosted@example.com",
            "form_stamp": hidden(form.text, "form_stamp"),
            "back": ARTICLE,
        },
        headers={"Origin": app.settings.base_url},
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/subscribe/daily/thanks?back={quote(ARTICLE, safe='')}"
    for _ in range(2):  # a reload shows the page again and sends nothing more
        result = await app.client.get(sent.headers["location"])
        assert result.status_code == 200
        assert "Almost done" in visible(result)
        assert f'href="{ARTICLE}"' in result.text
        assert "www.example.com" in visible(result)
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["hosted@example.com"]


async def test_the_way_back_leads_only_to_sites_the_list_allows(app: Running) -> None:
    for elsewhere in (
        "https://evil.example/phish",
        "javascript:alert(1)",
        "//www.example.com/x",
        "https://www.example.com.evil.example/x",
        "https://www.example.com@evil.example/x",
        "http://www.example.com/x",  # the list allows https only
        "https://www.example.com:8443/x",
    ):
        form = await app.client.get("/subscribe/daily", params={"back": elsewhere})
        assert 'name="back"' not in form.text
        result = await app.client.get("/subscribe/daily/thanks", params={"back": elsewhere})
        assert result.status_code == 200
        assert elsewhere not in result.text


async def test_a_mistake_shows_the_form_again_with_what_was_typed(
    app: Running, smtp: SMTPServer
) -> None:
    await update_list(app.db, "daily", {"nameField": "true", "consentCheckbox": "true"})
    form = await app.client.get("/subscribe/daily")
    refused = await app.client.post(
        "/subscribe/daily",
        data={
            "email": "jörg@exa mple.com",
            "name": "Jörg <Leser>",
            "consent": "yes",
            "form_stamp": hidden(form.text, "form_stamp"),
        },
    )
    assert refused.status_code == 422
    page = visible(refused)
    assert "did not go through" in page
    assert 'value="jörg@exa mple.com"' in refused.text
    assert 'value="Jörg &lt;Leser&gt;"' in refused.text
    assert "checked" in refused.text
    assert 'aria-invalid="true"' in refused.text
    # The same form, corrected, goes through.
    fixed = await app.client.post(
        "/subscribe/daily",
        data={
            "email": "joerg@example.com",
            "name": "Jörg",
            "consent": "yes",
            "form_stamp": hidden(refused.text, "form_stamp"),
        },
    )
    assert fixed.status_code == 303
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["joerg@example.com"]


async def test_an_unknown_list_has_no_hosted_page(app: Running) -> None:
    assert (await app.client.get("/subscribe/nope")).status_code == 404
    assert (await app.client.post("/subscribe/nope", data={"email": "a@b.co"})).status_code == 404


async def test_another_site_cannot_post_the_hosted_form(app: Running, smtp: SMTPServer) -> None:
    """The form posts to its own origin; a page elsewhere posting it is refused (CSRF)."""
    form = await app.client.get("/subscribe/daily")
    forged = await app.client.post(
        "/subscribe/daily",
        data={"email": "victim@example.com", "form_stamp": hidden(form.text, "form_stamp")},
        headers={"Origin": "https://evil.example", "Accept": "text/html"},
    )
    assert forged.status_code == 403
    assert "not allowed to sign people up" in visible(forged)
    await asyncio.sleep(0.3)
    assert smtp.received == []
