"""The AI engine: one call, an ordered chain of providers (local model -> OpenAI primary ->
OpenAI secondary), failing over on connection errors, timeouts, HTTP errors, 429s and answers
the caller cannot use.

The engine never retries a provider on its own, with one exception: a 429 whose Retry-After
fits the remaining budget is waited for once. When every provider fails, `AllProvidersFailed`
lists each one's reason; retrying later is Temporal's business (it carries the shortest
Retry-After seen, as a hint). A circuit breaker skips providers that keep failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import httpx
from redis.asyncio import Redis

from core.config import Settings
from core.errors import AIError
from inference.client.breaker import Breaker, MemoryBreaker, RedisBreaker
from inference.client.providers import ChatProvider, Completion, ProviderConfig, ProviderFailure

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnusableAnswer(Exception):
    """Raised by an answer reader: the text cannot be used (the next provider is asked)."""


@dataclass(frozen=True)
class Attempt:
    provider: str
    reason: str


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T  # what the reader made of the text
    completion: Completion
    # Providers tried before this one, and why they did not do.
    failed_attempts: list[Attempt] = field(default_factory=list)


class AllProvidersFailed(AIError):
    """No provider gave a usable answer. `unusable_only`: every provider answered, but no
    answer could be used (asking again, differently, may help; retrying the same may not)."""

    def __init__(self, attempts: Sequence[Attempt], *, retry_after_s: float | None) -> None:
        reasons = "; ".join(f"{attempt.provider}: {attempt.reason}" for attempt in attempts)
        super().__init__(
            f"No AI provider could answer ({reasons or 'none is configured'})",
            details={
                "providers": [
                    {"provider": attempt.provider, "reason": attempt.reason} for attempt in attempts
                ]
            },
        )
        self.attempts = list(attempts)
        self.retry_after_s = retry_after_s
        self.unusable_only = bool(attempts) and all(
            attempt.reason.startswith(UNUSABLE_PREFIX) for attempt in attempts
        )


UNUSABLE_PREFIX = "unusable answer"
CIRCUIT_OPEN = "skipped: failing recently (circuit open)"


class AIEngine:
    def __init__(
        self,
        providers: Sequence[ChatProvider],
        breaker: Breaker,
        *,
        retry_after_budget_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.providers = list(providers)
        self.breaker = breaker
        self.retry_after_budget_s = retry_after_budget_s
        self._sleep = sleep

    @property
    def provider_names(self) -> list[str]:
        return [provider.name for provider in self.providers]

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        read: Callable[[str], T],
    ) -> Answer[T]:
        """The first usable answer along the chain. `read` turns the text into what the caller
        needs (`str` for the text as it is), raising UnusableAnswer when it cannot."""
        attempts: list[Attempt] = []
        retry_after: list[float] = []
        deadline = time.monotonic() + self.retry_after_budget_s
        for provider in self.providers:
            if await self.breaker.is_open(provider.name):
                attempts.append(Attempt(provider.name, CIRCUIT_OPEN))
                continue
            try:
                completion = await self._call(provider, messages, max_tokens, temperature, deadline)
            except ProviderFailure as failure:
                log.warning(
                    "AI provider failed",
                    extra={"provider": failure.provider, "reason": failure.reason},
                )
                await self.breaker.record_failure(provider.name)
                attempts.append(Attempt(provider.name, failure.reason))
                if failure.retry_after_s is not None:
                    retry_after.append(failure.retry_after_s)
                continue
            await self.breaker.record_success(provider.name)  # it answered: it is up
            try:
                value = read(completion.text)
            except UnusableAnswer as unusable:
                log.info(
                    "AI answer unusable",
                    extra={"provider": provider.name, "reason": str(unusable)},
                )
                attempts.append(Attempt(provider.name, f"{UNUSABLE_PREFIX}: {unusable}"))
                continue
            return Answer(value=value, completion=completion, failed_attempts=attempts)
        raise AllProvidersFailed(attempts, retry_after_s=min(retry_after, default=None))

    async def _call(
        self,
        provider: ChatProvider,
        messages: Sequence[dict[str, str]],
        max_tokens: int,
        temperature: float,
        deadline: float,
    ) -> Completion:
        """One call; a 429 that asks for a wait within the remaining budget is retried once."""
        try:
            return await provider.complete(messages, max_tokens=max_tokens, temperature=temperature)
        except ProviderFailure as failure:
            wait = failure.retry_after_s
            if wait is None or wait > deadline - time.monotonic():
                raise
            await self._sleep(wait)
            return await provider.complete(messages, max_tokens=max_tokens, temperature=temperature)


def provider_configs(settings: Settings) -> list[ProviderConfig]:
    """The chain, in order: the local model when enabled, then each OpenAI with a key."""
    configs = []
    if settings.local_ai_enabled:
        configs.append(
            ProviderConfig("local", settings.local_ai_base_url, settings.local_ai_model, None)
        )
    for name, key, base_url, model in (
        ("openai", settings.openai_api_key, settings.openai_base_url, settings.openai_model),
        (
            "openai-secondary",
            settings.openai_secondary_api_key,
            settings.openai_secondary_base_url,
            settings.openai_secondary_model,
        ),
    ):
        if key is not None and key.get_secret_value():
            configs.append(ProviderConfig(name, base_url, model, key.get_secret_value()))
    return configs


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """One client for every provider: pooled connections, no retries of its own."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.ai_request_timeout_s, connect=settings.ai_connect_timeout_s),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )


def create_engine(
    settings: Settings,
    client: httpx.AsyncClient,
    redis: Redis | None,
    configs: Sequence[ProviderConfig] | None = None,
) -> AIEngine:
    breaker: Breaker
    if redis is not None:
        breaker = RedisBreaker(
            redis,
            settings.redis_key_prefix,
            failures=settings.ai_breaker_failures,
            cooloff_s=settings.ai_breaker_cooloff_s,
        )
    else:
        breaker = MemoryBreaker(
            failures=settings.ai_breaker_failures, cooloff_s=settings.ai_breaker_cooloff_s
        )
    chain = provider_configs(settings) if configs is None else configs
    return AIEngine(
        [ChatProvider(config, client) for config in chain],
        breaker,
        retry_after_budget_s=settings.ai_retry_after_budget_s,
    )
