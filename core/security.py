"""Security primitives: password hashing and typed, signed tokens."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import bcrypt
from jose import JWTError, jwt

from core.clock import utc_now
from core.config import Settings

T = TypeVar("T")

BCRYPT_ROUNDS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores everything after 72 bytes: refuse, never truncate
JWT_ALGORITHM = "HS256"
# Nice value for hashing threads: under load the event loop's thread wins the CPU.
_HASHING_THREAD_NICENESS = 10


class PasswordHasher:
    """bcrypt (cost 12) off the event loop, on a bounded pool of low-priority threads.

    bcrypt releases the GIL, so an unbounded number of concurrent hashes would take every core
    away from the event loop and stall unrelated requests. The pool caps the number of hashes
    in flight (one per core by default) and lowers those threads' scheduling priority.
    """

    def __init__(self, max_concurrency: int | None = None, rounds: int = BCRYPT_ROUNDS) -> None:
        self.rounds = rounds
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency or os.cpu_count() or 1,
            thread_name_prefix="bcrypt",
            initializer=_lower_thread_priority,
        )
        # A real hash to check against when the user does not exist, so that a login for an
        # unknown name takes as long as one with a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        secret = _password_bytes(password)
        salt = bcrypt.gensalt(self.rounds)
        hashed = await self._run(bcrypt.hashpw, secret, salt)
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True when `password` matches. With no hash, burns the same time and returns False."""
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        expected = password_hash.encode() if password_hash else self._dummy_hash
        matches = await self._run(bcrypt.checkpw, secret, expected)
        return matches and password_hash is not None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _password_bytes(password: str) -> bytes:
    secret = password.encode()
    if len(secret) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    return secret


def _lower_thread_priority() -> None:
    # On Linux, setpriority on a thread id changes that thread only.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _HASHING_THREAD_NICENESS)


class TokenType(StrEnum):
    ACCESS = "access"
    PREVIEW = "preview"


class InvalidToken(Exception):
    """The token is malformed, forged, expired, or not of the expected type. The message says
    which, for logs; clients get one generic answer."""


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    user_id: uuid.UUID
    roles: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    # The user's token generation when the token was issued (claim `gen`; 0 when absent): a
    # password change moves the user's on, which revokes every token issued before it.
    generation: int = 0


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


def create_access_token(
    settings: Settings,
    user_id: uuid.UUID,
    roles: Sequence[str],
    *,
    generation: int = 0,
    now: datetime | None = None,
    ttl: timedelta | None = None,
) -> IssuedToken:
    """A signed access token; `generation` is the user's `User.token_generation`."""
    issued_at = now or utc_now()
    ttl = ttl or timedelta(minutes=settings.access_token_expire_minutes)
    claims = {
        "sub": str(user_id),
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
        "roles": list(roles),
        "gen": generation,
        "typ": TokenType.ACCESS.value,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    token = jwt.encode(claims, settings.jwt_secret_bytes, algorithm=JWT_ALGORITHM)
    return IssuedToken(token=token, expires_in=int(ttl.total_seconds()))


def decode_access_token(settings: Settings, token: str) -> AccessTokenClaims:
    """Verify signature (HS256 only), expiry, issuer, audience and type."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret_bytes,
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
            },
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("typ") != TokenType.ACCESS.value:
        raise InvalidToken(f"token type {claims.get('typ')!r} is not an access token")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidToken("roles claim is malformed")
    generation = claims.get("gen", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise InvalidToken("generation claim is malformed")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise InvalidToken("subject is not a user id") from exc
    return AccessTokenClaims(
        user_id=user_id,
        roles=tuple(roles),
        issued_at=datetime.fromtimestamp(int(claims["iat"]), tz=UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        generation=generation,
    )


PREVIEW_AUDIENCE = "hivesync-preview"


@dataclass(frozen=True, slots=True)
class PreviewTokenClaims:
    project_id: uuid.UUID
    build_id: str
    expires_at: datetime


def _preview_key(settings: Settings) -> bytes:
    """A key of its own for preview tokens, derived from JWT_SECRET: an access token can never
    verify as a preview token, nor the reverse, even before the type check."""
    return hmac.new(settings.jwt_secret_bytes, b"hivesync/preview-token/v1", "sha256").digest()


def create_preview_token(
    settings: Settings,
    project_id: uuid.UUID,
    build_id: str,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> IssuedToken:
    """A stateless token that lets the mobile preview app open one build until it expires."""
    issued_at = now or utc_now()
    claims = {
        "pid": str(project_id),
        "bid": build_id,
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
        "typ": TokenType.PREVIEW.value,
        "iss": settings.jwt_issuer,
        "aud": PREVIEW_AUDIENCE,
    }
    token = jwt.encode(claims, _preview_key(settings), algorithm=JWT_ALGORITHM)
    return IssuedToken(token=token, expires_in=int(ttl.total_seconds()))


def decode_preview_token(settings: Settings, token: str) -> PreviewTokenClaims:
    try:
        claims = jwt.decode(
            token,
            _preview_key(settings),
            algorithms=[JWT_ALGORITHM],
            audience=PREVIEW_AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require_exp": True, "require_iat": True, "require_aud": True},
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("typ") != TokenType.PREVIEW.value:
        raise InvalidToken(f"token type {claims.get('typ')!r} is not a preview token")
    try:
        project_id = uuid.UUID(str(claims["pid"]))
        build_id = str(claims["bid"])
    except (KeyError, ValueError) as exc:
        raise InvalidToken("preview token without a valid project or build") from exc
    return PreviewTokenClaims(
        project_id=project_id,
        build_id=build_id,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
    )
