"""The AI engine's failover against real HTTP servers speaking the OpenAI protocol, and its
circuit breaker in the real Redis. No function is patched: the stub servers misbehave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from core.config import Settings
from inference.client.engine import (
    CIRCUIT_OPEN,
    AIEngine,
    AllProvidersFailed,
    Answer,
    UnusableAnswer,
    create_engine,
    provider_configs,
)
from inference.client.providers import ProviderConfig
from tests.fixtures.openai_stub import StubOpenAI
from tests.helpers import REDIS_URL, delete_redis_keys

MESSAGES = [{"role": "user", "content": "Describe add(a, b) in one sentence."}]


@pytest.fixture(autouse=True)
def _fresh_breakers(redis_prefix: str) -> Iterator[None]:
    """Each test starts with closed circuits."""
    delete_redis_keys(redis_prefix + "ai:")
    yield
    delete_redis_keys(redis_prefix + "ai:")


@pytest.fixture
def stubs(openai_stub: Callable[[str], StubOpenAI]) -> dict[str, StubOpenAI]:
    return {name: openai_stub(name) for name in ("local", "openai", "openai-secondary")}


@pytest.fixture
def engine_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        ai_request_timeout_s=1.5,
        ai_connect_timeout_s=1.0,
        ai_retry_after_budget_s=2.0,
        ai_breaker_failures=2,
        ai_breaker_cooloff_s=1.0,
    )


def configs(stubs: dict[str, StubOpenAI]) -> list[ProviderConfig]:
    return [
        ProviderConfig("local", stubs["local"].base_url, "local", None),
        ProviderConfig("openai", stubs["openai"].base_url, "gpt-4o-mini", "sk-primary"),
        ProviderConfig(
            "openai-secondary", stubs["openai-secondary"].base_url, "gpt-4o-mini", "sk-second"
        ),
    ]


def run(
    settings: Settings,
    chain: Sequence[ProviderConfig],
    read: Callable[[str], Any] = str,
    calls: int = 1,
) -> list[Answer[Any] | AllProvidersFailed]:
    """Ask the engine `calls` times in a row (a fresh engine on a fresh loop, like a worker)."""

    async def go() -> list[Answer[Any] | AllProvidersFailed]:
        redis = Redis.from_url(REDIS_URL)
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(settings.ai_request_timeout_s, connect=1.0)
        ) as client:
            engine = create_engine(settings, client, redis, chain)
            results: list[Answer[Any] | AllProvidersFailed] = []
            for _ in range(calls):
                try:
                    results.append(await engine.complete(MESSAGES, max_tokens=32, read=read))
                except AllProvidersFailed as failure:
                    results.append(failure)
        await redis.aclose()
        return results

    return asyncio.run(go())


def one(settings: Settings, chain: Sequence[ProviderConfig], **kwargs: Any) -> Answer[Any]:
    result = run(settings, chain, **kwargs)[0]
    assert isinstance(result, Answer), result
    return result


def failure(settings: Settings, chain: Sequence[ProviderConfig]) -> AllProvidersFailed:
    result = run(settings, chain)[0]
    assert isinstance(result, AllProvidersFailed), result
    return result


def test_local_answers_first_and_the_answer_is_attributed(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    answer = one(engine_settings, configs(stubs))

    assert answer.value == "Adds two numbers and returns the sum."
    assert answer.completion.provider == "local"
    assert answer.completion.model == "local"
    assert answer.completion.tokens_in > 0
    assert answer.completion.tokens_out == 7
    assert answer.completion.latency_ms >= 0
    assert answer.failed_attempts == []
    assert len(stubs["openai"].requests) == 0
    request = stubs["local"].requests[0]
    assert request["body"]["messages"] == MESSAGES
    assert request["body"]["max_tokens"] == 32
    assert "authorization" not in request["headers"]


def test_local_down_primary_answers(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    stubs["local"].stop()

    answer = one(engine_settings, configs(stubs))

    assert answer.completion.provider == "openai"
    assert answer.failed_attempts[0].provider == "local"
    assert "connection error" in answer.failed_attempts[0].reason
    assert stubs["openai"].requests[0]["headers"]["authorization"] == "Bearer sk-primary"


@pytest.mark.parametrize(
    ("misbehaviour", "reason"),
    [
        ({"mode": "error", "status": 500}, "HTTP 500: openai is failing"),
        ({"mode": "error", "status": 503}, "HTTP 503"),
        ({"mode": "rate_limit", "retry_after": "120"}, "rate limited (HTTP 429)"),
        ({"mode": "rate_limit"}, "rate limited (HTTP 429)"),
        ({"mode": "stall", "stall_s": 5}, "timed out"),
        ({"mode": "error", "status": 401}, "HTTP 401"),
    ],
    ids=["500", "503", "429-long-retry-after", "429-no-retry-after", "timeout", "401"],
)
def test_primary_failing_secondary_answers(
    engine_settings: Settings,
    stubs: dict[str, StubOpenAI],
    misbehaviour: dict[str, Any],
    reason: str,
) -> None:
    stubs["local"].stop()
    stubs["openai"].behave(**misbehaviour)

    answer = one(engine_settings, configs(stubs))

    assert answer.completion.provider == "openai-secondary"
    assert [attempt.provider for attempt in answer.failed_attempts] == ["local", "openai"]
    assert reason in answer.failed_attempts[1].reason
    assert len(stubs["openai"].requests) == 1  # no retry of its own
    assert stubs["openai-secondary"].requests[0]["headers"]["authorization"] == "Bearer sk-second"


def test_short_retry_after_is_honoured_once(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    stubs["local"].then("rate_limit", retry_after="1")

    started = time.monotonic()
    answer = one(engine_settings, configs(stubs))

    assert answer.completion.provider == "local"
    assert len(stubs["local"].requests) == 2
    assert time.monotonic() - started >= 1.0  # it did wait for the Retry-After
    assert len(stubs["openai"].requests) == 0


def test_all_down_lists_every_reason(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    stubs["local"].stop()
    stubs["openai"].behave("error", status=500)
    stubs["openai-secondary"].behave("rate_limit", retry_after="30")

    failed = failure(engine_settings, configs(stubs))

    assert failed.code == "AI_ERROR"
    assert [entry["provider"] for entry in failed.details["providers"]] == [
        "local",
        "openai",
        "openai-secondary",
    ]
    assert "connection error" in failed.details["providers"][0]["reason"]
    assert "HTTP 500" in failed.details["providers"][1]["reason"]
    assert "HTTP 429" in failed.details["providers"][2]["reason"]
    assert failed.retry_after_s == 30
    assert not failed.unusable_only
    assert "local: connection error" in failed.message


def test_unusable_answers_fail_over_and_are_reported(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    def read(text: str) -> str:
        if "sum" in text:
            raise UnusableAnswer("it talks about sums")
        return text

    stubs["openai-secondary"].behave(text="Combines both values.")
    answer = one(engine_settings, configs(stubs), read=read)
    assert answer.completion.provider == "openai-secondary"
    assert answer.failed_attempts[0].reason == "unusable answer: it talks about sums"

    stubs["openai-secondary"].behave(text="The sum.")
    failed = failure_with(engine_settings, configs(stubs), read)
    assert failed.unusable_only


def failure_with(
    settings: Settings, chain: Sequence[ProviderConfig], read: Callable[[str], Any]
) -> AllProvidersFailed:
    result = run(settings, chain, read=read)[0]
    assert isinstance(result, AllProvidersFailed), result
    return result


def test_circuit_breaker_skips_a_failing_provider_then_tries_it_again(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    stubs["local"].behave("error", status=502)

    results = run(engine_settings, configs(stubs), calls=4)

    # Two failures open the circuit: the next calls skip the local model without asking it.
    assert all(isinstance(result, Answer) for result in results)
    assert len(stubs["local"].requests) == 2
    last = results[-1]
    assert isinstance(last, Answer)
    assert last.failed_attempts[0].reason == CIRCUIT_OPEN
    # Another engine (another worker) sees the same open circuit through Redis.
    assert len(stubs["local"].requests) == 2
    shared = one(engine_settings, configs(stubs))
    assert shared.failed_attempts[0].reason == CIRCUIT_OPEN
    assert len(stubs["local"].requests) == 2
    # After the cool-off the local model is tried again, and its recovery closes the circuit.
    time.sleep(engine_settings.ai_breaker_cooloff_s + 0.1)
    stubs["local"].behave("answer")
    recovered = run(engine_settings, configs(stubs), calls=2)
    assert all(isinstance(r, Answer) and r.completion.provider == "local" for r in recovered)


def test_a_half_open_circuit_reopens_on_one_failure(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    stubs["local"].behave("error", status=500)
    run(engine_settings, configs(stubs), calls=2)  # opens it
    time.sleep(engine_settings.ai_breaker_cooloff_s + 0.1)

    run(engine_settings, configs(stubs), calls=2)  # one trial, which fails: open again

    assert len(stubs["local"].requests) == 3


def test_no_provider_configured(engine_settings: Settings) -> None:
    failed = failure(engine_settings, [])
    assert "none is configured" in failed.message


def test_settings_build_the_chain_in_order(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        openai_api_key="sk-a", openai_secondary_api_key="sk-b", local_ai_enabled=True
    )
    assert [config.name for config in provider_configs(settings)] == [
        "local",
        "openai",
        "openai-secondary",
    ]
    assert [c.name for c in provider_configs(make_settings(local_ai_enabled=False))] == []


def test_engine_without_redis_keeps_the_breaker_in_process(
    engine_settings: Settings, stubs: dict[str, StubOpenAI]
) -> None:
    async def go() -> list[str]:
        async with httpx.AsyncClient(timeout=2) as client:
            engine: AIEngine = create_engine(engine_settings, client, None, configs(stubs))
            stubs["local"].behave("error", status=500)
            answers = [await engine.complete(MESSAGES, max_tokens=8, read=str) for _ in range(3)]
            return [answer.failed_attempts[0].reason for answer in answers]

    reasons = asyncio.run(go())
    assert reasons[-1] == CIRCUIT_OPEN
    assert len(stubs["local"].requests) == 2
