from __future__ import annotations

import asyncio
import hashlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import utc_now
from core.config import Settings
from core.db import release_connection
from core.errors import AuthError, RateLimited
from core.models import User
from core.ratelimit import Decision, Limit, RateLimiter, password_guess_limit
from core.security import (
    AccessTokenClaims,
    InvalidToken,
    IssuedToken,
    PasswordHasher,
    create_access_token,
    decode_access_token,
)
from services.users.repository import UserRepository
from services.users.schemas import UserCreate
from services.users.service import UserService

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Incorrect username or password"
INVALID_TOKEN = "Invalid or expired access token"  # noqa: S105 - a message


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        hasher: PasswordHasher,
        limiter: RateLimiter,
    ) -> None:
        self.session = session
        self.settings = settings
        self.hasher = hasher
        self.limiter = limiter
        self.users = UserRepository(session)

    async def register(self, data: UserCreate, client_ip: str) -> tuple[User, IssuedToken]:
        decision = await self.limiter.hit(
            [
                Limit(
                    f"register:ip:{client_ip}",
                    self.settings.register_rate_limit_per_ip,
                    self.settings.register_rate_limit_window_s,
                )
            ]
        )
        if not decision.allowed:
            log.warning("registration rate limited", extra={"client_ip": client_ip})
            raise RateLimited(
                "Too many registrations from this address", retry_after_s=decision.retry_after_s
            )
        user = await UserService(self.session, self.hasher, self.limiter, self.settings).create(
            data
        )
        log.info("user registered", extra={"new_user_id": str(user.id)})
        return user, issue_access_token(self.settings, user)

    async def login(self, login: str, password: str, client_ip: str) -> IssuedToken:
        """Check credentials under three limits: per client address; per (address, login
        name), so that one guessed account cannot lock out the rest of an office behind NAT;
        and per account from every address together, so that rotating addresses gives no
        more guesses. Redis down: RedisError, answered 503 (fail closed)."""
        window = self.settings.login_rate_limit_window_s
        # Hashed so that emails never appear in Redis keys.
        login_digest = hashlib.sha256(login.strip().lower().encode()).hexdigest()[:32]
        pair_key = f"login:ip_login:{client_ip}:{login_digest}"
        self._check(
            await self.limiter.hit(
                [
                    Limit(f"login:ip:{client_ip}", self.settings.login_rate_limit_per_ip, window),
                    Limit(pair_key, self.settings.login_rate_limit_per_user, window),
                ]
            ),
            client_ip,
        )
        user = await self.users.get_by_login(login)
        await release_connection(self.session)  # not held through ~0.2 s of bcrypt
        # By user id, so that the username and the email share one budget; a name that no
        # account has is limited by its digest alike (answers must not tell the two apart).
        account_limit = password_guess_limit(
            self.settings, str(user.id) if user is not None else f"name:{login_digest}"
        )
        self._check(await self.limiter.hit([account_limit]), client_ip)

        if not await self.hasher.verify(password, user.password_hash if user else None):
            log.info("login failed", extra={"client_ip": client_ip})
            raise AuthError(INVALID_CREDENTIALS)
        assert user is not None  # verify() is False without a user
        user.last_login = utc_now()
        await self.session.commit()
        await self.limiter.reset(pair_key)
        await self.limiter.reset(account_limit.key)
        log.info("login succeeded", extra={"login_user_id": str(user.id)})
        return issue_access_token(self.settings, user)

    @staticmethod
    def _check(decision: Decision, client_ip: str) -> None:
        if not decision.allowed:
            log.warning("login rate limited", extra={"client_ip": client_ip})
            raise RateLimited(
                "Too many login attempts; try again later", retry_after_s=decision.retry_after_s
            )


def issue_access_token(settings: Settings, user: User) -> IssuedToken:
    return create_access_token(settings, user.id, user.roles, generation=user.token_generation)


async def authenticate_access_token(session: AsyncSession, settings: Settings, token: str) -> User:
    """The user an access token stands for; AuthError for any bad, expired, revoked (by a
    password change) or orphan token."""
    user, _ = await authenticate_access(session, settings, token)
    return user


async def authenticate_access(
    session: AsyncSession, settings: Settings, token: str
) -> tuple[User, AccessTokenClaims]:
    """`authenticate_access_token`, with the token's claims."""
    try:
        claims = decode_access_token(settings, token)
    except InvalidToken as exc:
        log.info("access token rejected: %s", exc)
        raise AuthError(INVALID_TOKEN) from None
    user = await UserRepository(session).get(claims.user_id)
    if user is None:
        log.info("access token rejected: user no longer exists")
        raise AuthError(INVALID_TOKEN)
    if claims.generation != user.token_generation:
        log.info("access token rejected: revoked by a password change")
        raise AuthError(INVALID_TOKEN)
    return user, claims


async def access_ends(
    sessions: async_sessionmaker[AsyncSession], claims: AccessTokenClaims, *, recheck_s: float
) -> str:
    """Wait while an access token stays valid, for a long-lived connection that it opened.
    Returns why it stopped: at its expiry, or (noticed within `recheck_s`, at one query per
    check) once a password change revoked it or its user was deleted."""
    while True:
        left_s = (claims.expires_at - utc_now()).total_seconds()
        if left_s <= 0:
            return "token expired"
        await asyncio.sleep(min(left_s, recheck_s))
        if claims.expires_at <= utc_now():
            return "token expired"
        async with sessions() as session:
            user = await UserRepository(session).get(claims.user_id)
        if user is None or user.token_generation != claims.generation:
            return "token revoked"
