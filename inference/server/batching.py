"""An asyncio micro-batcher for running the model in process (tests, a plain uvicorn run).

Requests are collected until `max_batch_size` have arrived or `batch_wait_s` has passed since
the first one, then the whole batch goes to a blocking function in a worker thread; while it
runs, the next batch collects. The Ray Serve replicas (inference/server/serve.py) put it behind
`@serve.batch`, so that the model's next batch forms only when the model is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """What a batcher has run: a counter of batch sizes, for /stats and the tests."""

    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    busy_s: float = 0.0

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.requests += size
        self.largest_batch = max(self.largest_batch, size)
        self.sizes[size] += 1
        self.busy_s += seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "largest_batch": self.largest_batch,
            "batch_sizes": {str(size): count for size, count in sorted(self.sizes.items())},
            "busy_s": round(self.busy_s, 3),
        }


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class MicroBatcher(Generic[Item, Result]):
    """`await batcher.submit(item)` returns `run_batch([..., item, ...])`'s result for it.

    `run_batch` is blocking (it runs in a thread) and returns one result per item, in order;
    when it raises, every request of that batch gets the exception. One batch runs at a time.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        max_batch_size: int,
        batch_wait_s: float,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.stats = BatchStats()
        self._waiting: deque[_Pending[Item, Result]] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="micro-batcher")
        pending = _Pending[Item, Result](item, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._arrived.set()
        return await pending.future

    async def close(self) -> None:
        """Stop; requests still waiting are cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._waiting:
            self._waiting.popleft().future.cancel()

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            started = time.perf_counter()
            try:
                results = await asyncio.to_thread(
                    self.run_batch, [pending.item for pending in batch]
                )
            except Exception as error:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.stats.record(len(batch), time.perf_counter() - started)
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)

    async def _collect(self) -> list[_Pending[Item, Result]]:
        """Wait for a first request, then for more until the batch is full or the wait is over.
        Requests whose caller went away (a disconnected client) are dropped."""
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._waiting) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            size = min(self.max_batch_size, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(size)]
            batch = [pending for pending in batch if not pending.future.done()]
            if batch:
                return batch
