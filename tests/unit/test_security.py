from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from jose import jwt

from core.clock import utc_now
from core.config import Settings
from core.security import (
    InvalidToken,
    PasswordHasher,
    create_access_token,
    create_preview_token,
    decode_access_token,
    decode_preview_token,
)

SETTINGS = Settings(jwt_secret="unit-" + "s" * 40)


def test_access_token_round_trip() -> None:
    user_id = uuid.uuid4()
    issued = create_access_token(SETTINGS, user_id, ["user", "admin"])
    assert issued.expires_in == SETTINGS.access_token_expire_minutes * 60
    claims = decode_access_token(SETTINGS, issued.token)
    assert claims.user_id == user_id
    assert claims.roles == ("user", "admin")
    assert claims.expires_at - claims.issued_at == timedelta(seconds=issued.expires_in)
    payload = jwt.get_unverified_claims(issued.token)
    assert set(payload) == {"sub", "exp", "iat", "roles", "gen", "typ", "iss", "aud"}
    assert payload["typ"] == "access"
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_expired_token() -> None:
    issued = create_access_token(
        SETTINGS, uuid.uuid4(), [], now=utc_now() - timedelta(minutes=10), ttl=timedelta(minutes=5)
    )
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(SETTINGS, issued.token)


def test_token_from_another_deployment() -> None:
    other = Settings(jwt_secret="other-" + "o" * 40)
    with pytest.raises(InvalidToken):
        decode_access_token(SETTINGS, create_access_token(other, uuid.uuid4(), []).token)


def test_token_of_another_type() -> None:
    claims = jwt.get_unverified_claims(create_access_token(SETTINGS, uuid.uuid4(), []).token)
    token = jwt.encode({**claims, "typ": "preview"}, SETTINGS.jwt_secret_bytes, "HS256")
    with pytest.raises(InvalidToken, match="not an access token"):
        decode_access_token(SETTINGS, token)


def test_malformed_roles_claim() -> None:
    claims = jwt.get_unverified_claims(create_access_token(SETTINGS, uuid.uuid4(), []).token)
    token = jwt.encode({**claims, "roles": "admin"}, SETTINGS.jwt_secret_bytes, "HS256")
    with pytest.raises(InvalidToken, match="roles"):
        decode_access_token(SETTINGS, token)


def test_password_hashing_uses_bcrypt_cost_12() -> None:
    async def scenario() -> None:
        hasher = PasswordHasher(max_concurrency=2)
        try:
            hashed = await hasher.hash("correct horse")
            assert hashed.startswith("$2b$12$")
            assert await hasher.verify("correct horse", hashed)
            assert not await hasher.verify("wrong horse", hashed)
            assert not await hasher.verify("correct horse", None)
            assert not await hasher.verify("x" * 73, hashed)
            with pytest.raises(ValueError, match="72 bytes"):
                await hasher.hash("é" * 37)
        finally:
            hasher.close()

    asyncio.run(scenario())


def test_hashing_keeps_the_event_loop_free() -> None:
    """While hashes run in the pool, the loop goes on serving other coroutines."""

    async def scenario() -> int:
        hasher = PasswordHasher(max_concurrency=1)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(hasher.hash("password123") for _ in range(3)))
        finally:
            task.cancel()
            hasher.close()
        return ticks

    # Three hashes take ~0.6 s of one core; a blocked loop would not tick at all.
    assert asyncio.run(scenario()) > 10


def test_preview_token_round_trip() -> None:
    project_id = uuid.uuid4()
    issued = create_preview_token(SETTINGS, project_id, "b" * 32, ttl=timedelta(minutes=10))
    assert issued.expires_in == 600
    claims = decode_preview_token(SETTINGS, issued.token)
    assert (claims.project_id, claims.build_id) == (project_id, "b" * 32)


def test_preview_and_access_tokens_cannot_stand_for_each_other() -> None:
    preview = create_preview_token(SETTINGS, uuid.uuid4(), "b" * 32, ttl=timedelta(minutes=10))
    access = create_access_token(SETTINGS, uuid.uuid4(), ["user"])
    with pytest.raises(InvalidToken):
        decode_access_token(SETTINGS, preview.token)
    with pytest.raises(InvalidToken):
        decode_preview_token(SETTINGS, access.token)
    # Even a token typed "preview" but signed with the access-token key is refused.
    claims = jwt.get_unverified_claims(preview.token)
    forged = jwt.encode(claims, SETTINGS.jwt_secret_bytes, "HS256")
    with pytest.raises(InvalidToken, match="Signature"):
        decode_preview_token(SETTINGS, forged)


def test_expired_or_tampered_preview_token() -> None:
    expired = create_preview_token(
        SETTINGS,
        uuid.uuid4(),
        "b" * 32,
        ttl=timedelta(minutes=10),
        now=utc_now() - timedelta(minutes=11),
    )
    with pytest.raises(InvalidToken, match="expired"):
        decode_preview_token(SETTINGS, expired.token)
    header, payload, signature = create_preview_token(
        SETTINGS, uuid.uuid4(), "b" * 32, ttl=timedelta(minutes=10)
    ).token.split(".")
    other_build = jwt.get_unverified_claims(f"{header}.{payload}.{signature}") | {"bid": "c" * 32}
    forged_payload = jwt.encode(other_build, "x", "HS256").split(".")[1]
    with pytest.raises(InvalidToken):
        decode_preview_token(SETTINGS, f"{header}.{forged_payload}.{signature}")
