"""One AI provider spoken to over the OpenAI chat-completions HTTP protocol (the local model
server, OpenAI, or anything compatible), with httpx.

A call either returns a `Completion` or raises `ProviderFailure` saying why, in words fit for
an error message; it never retries on its own (the engine fails over, Temporal retries)."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

# Error bodies can be long HTML pages: keep what fits in a message.
_MAX_ERROR_TEXT = 200


@dataclass(frozen=True)
class ProviderConfig:
    name: str  # "local", "openai", "openai-secondary"
    base_url: str  # ends with /v1
    model: str
    api_key: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    latency_ms: int
    finish_reason: str | None = None


class ProviderFailure(Exception):
    """The provider could not answer; `reason` says why (connection error, timeout, HTTP 5xx,
    rate limited, malformed answer). `retry_after_s` is the provider's Retry-After, if any."""

    def __init__(self, provider: str, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.retry_after_s = retry_after_s


class ChatProvider:
    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client

    @property
    def name(self) -> str:
        return self.config.name

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
    ) -> Completion:
        headers = {}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        body = {
            "model": self.config.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        started = time.monotonic()
        try:
            response = await self.client.post(url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._failure(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise self._failure(f"connection error: {exc or type(exc).__name__}") from exc
        latency_ms = round((time.monotonic() - started) * 1000)
        if response.status_code == 429:
            raise self._failure(
                f"rate limited (HTTP 429): {_error_text(response)}",
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        if response.status_code >= 400:
            raise self._failure(f"HTTP {response.status_code}: {_error_text(response)}")
        try:
            return self._completion(response.json(), latency_ms)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._failure(f"malformed answer ({type(exc).__name__}: {exc})") from exc

    def _completion(self, data: Any, latency_ms: int) -> Completion:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("message content is not text")
        usage = data.get("usage") or {}
        return Completion(
            text=content,
            provider=self.name,
            model=str(data.get("model") or self.config.model),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_ms=latency_ms,
            finish_reason=choice.get("finish_reason"),
        )

    def _failure(self, reason: str, *, retry_after_s: float | None = None) -> ProviderFailure:
        return ProviderFailure(self.name, reason, retry_after_s=retry_after_s)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None when it is
    neither (or not a finite number: "inf" and "nan" parse as floats)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _error_text(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body, or the start of whatever the body is."""
    try:
        data = response.json()
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        message = None
    text = str(message or response.text or response.reason_phrase or "no message")
    return " ".join(text.split())[:_MAX_ERROR_TEXT]
