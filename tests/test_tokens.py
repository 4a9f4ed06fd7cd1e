from __future__ import annotations

import pytest

from service.tokens import InvalidToken, Purpose, TokenSigner

KEY = "k" * 40


def test_round_trip_and_binding() -> None:
    signer = TokenSigner(KEY)
    token = signer.make(Purpose.CONFIRM, 42, "nonce_1", 2_000_000_000)
    claims = signer.read(token, Purpose.CONFIRM, now=1_900_000_000)
    assert (claims.subscription_id, claims.nonce, claims.expires_at) == (
        42,
        "nonce_1",
        2_000_000_000,
    )
    # Deterministic: a retried email carries the same link.
    assert signer.make(Purpose.CONFIRM, 42, "nonce_1", 2_000_000_000) == token
    with pytest.raises(InvalidToken):
        signer.read(token, Purpose.UNSUBSCRIBE, now=1_900_000_000)
    with pytest.raises(InvalidToken):
        TokenSigner("x" * 40).read(token, Purpose.CONFIRM, now=1_900_000_000)


def test_expiry() -> None:
    signer = TokenSigner(KEY)
    token = signer.make(Purpose.CONFIRM, 1, "n", 1000)
    assert signer.read(token, Purpose.CONFIRM, now=999).subscription_id == 1
    with pytest.raises(InvalidToken, match="expired"):
        signer.read(token, Purpose.CONFIRM, now=1000)
    forever = signer.make(Purpose.UNSUBSCRIBE, 1, "u")
    assert signer.read(forever, Purpose.UNSUBSCRIBE, now=10**11).expires_at == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: "2" + t[1:],  # subscription id
        lambda t: t.replace(".n.", ".m."),  # nonce
        lambda t: t.replace(".1000.", ".9999."),  # expiry pushed out
        lambda t: t[:-5],  # truncated
        lambda t: t + "=",
        lambda t: "",
        lambda t: "../../etc/passwd",
        lambda t: "1.n.1000." + "A" * 43,
    ],
    ids=["signature", "id", "nonce", "expiry", "truncated", "padded", "empty", "path", "forged"],
)
def test_tampering_is_detected(mutate) -> None:  # type: ignore[no-untyped-def]
    signer = TokenSigner(KEY)
    token = signer.make(Purpose.CONFIRM, 1, "n", 1000)
    with pytest.raises(InvalidToken):
        signer.read(mutate(token), Purpose.CONFIRM, now=0)


def test_signature_strength_and_url_safety() -> None:
    token = TokenSigner(KEY).make(Purpose.CONFIRM, 123456, "AbC-_09", 1_800_000_000)
    signature = token.rsplit(".", 1)[1]
    assert len(signature) == 43  # 256-bit HMAC, base64url
    assert all(c.isalnum() or c in "-_." for c in token)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        TokenSigner("short")
