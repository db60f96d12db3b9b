"""Quotas per account: running builds, running documentation jobs, and new shares per window.

Every count lives in Redis (RATE_LIMIT_BACKEND=redis), so all API replicas share it; a Redis
outage fails closed (RedisError, answered 503), never open.

Running jobs are slots (`core.ratelimit.RunningJobs`): a sorted set per account and kind of
job, of the job ids running, each scored by the end of its lease. A new job, or a failed or
cancelled one asked for again, takes a slot before its workflow starts, atomically (two
replicas cannot both take the last one). Nothing on the worker has to free a slot: when an
account is at its quota, the slots whose jobs the database records as ended (or whose rows are
gone) are freed and the claim is tried again; a job whose end is never recorded (a workflow
terminated by hand) frees its slot when its lease ends. Counting the database's unended rows
alone would race (two replicas both counting one below the quota) and would keep a stuck row's
slot forever; a Redis counter alone would need every way a job ends to reach it.

A request that joins an identical job still running, or is answered by one that completed,
takes no slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.docs import DocPhase
from contracts.jobs import JobPhase
from contracts.previews import BuildPhase
from core.config import Settings
from core.errors import RateLimited
from core.models import AIRequest, JobRecord, PreviewLog
from core.ratelimit import Limit, RateLimiter, RunningJobs, SlotClaim

# A slot whose job has no row yet may belong to a request that is about to insert it: it is
# freed as orphaned only once it has been held this long.
ORPHAN_GRACE_S = 60.0


@dataclass(frozen=True)
class RunningQuota:
    """A kind of job of which an account may have only so many running."""

    name: str  # in Redis keys
    noun: str  # in messages, plural
    record: type[JobRecord]
    key_column: str  # the record's column that names a job (what the services pass)
    phases: type[JobPhase]
    max_running: Callable[[Settings], int]
    lease_s: Callable[[Settings], int]


BUILD_QUOTA = RunningQuota(
    "builds",
    "builds",
    PreviewLog,
    "build_id",
    BuildPhase,
    lambda settings: settings.quota_running_builds,
    lambda settings: settings.quota_build_lease_s,
)
DOC_JOB_QUOTA = RunningQuota(
    "doc_jobs",
    "documentation jobs",
    AIRequest,
    "job_key",
    DocPhase,
    lambda settings: settings.quota_running_doc_jobs,
    lambda settings: settings.quota_doc_job_lease_s,
)


class JobStatusRepository:
    """The recorded status of jobs of one kind, by the column that names them."""

    def __init__(self, session: AsyncSession, quota: RunningQuota) -> None:
        self.session = session
        self.column = sa.inspect(quota.record).columns[quota.key_column]
        self.status = sa.inspect(quota.record).columns["status"]

    async def statuses(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        rows = await self.session.execute(
            sa.select(self.column, self.status).where(self.column.in_(list(keys)))
        )
        return {str(key): str(status) for key, status in rows.all()}


class QuotaService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        limiter: RateLimiter,
        running: RunningJobs,
    ) -> None:
        self.session = session
        self.settings = settings
        self.limiter = limiter
        self.running = running

    async def start_job(self, owner_id: uuid.UUID, quota: RunningQuota, job: str) -> None:
        """Before a job is submitted: take a slot when the job will run anew (no row yet, or
        one that failed or was cancelled), none when it joins a running one or is answered by
        one that succeeded. 429 RATE_LIMIT with Retry-After when every slot is taken."""
        jobs = JobStatusRepository(self.session, quota)
        recorded = (await jobs.statuses([job])).get(job)
        if recorded is not None:
            phase = quota.phases(recorded)
            if not phase.ended or phase == phase.succeeded():
                return
        key = f"{quota.name}:{owner_id}"
        max_running = quota.max_running(self.settings)
        lease_s = quota.lease_s(self.settings)
        claim = await self.running.claim(key, job, max_running, lease_s)
        if not claim.granted:
            ended = await self._ended(jobs, quota, claim)
            if ended:
                await self.running.release(key, ended)
                claim = await self.running.claim(key, job, max_running, lease_s)
        if not claim.granted:
            soonest = min((holder.left_s for holder in claim.holders), default=0.0)
            raise RateLimited(
                f"You have {max_running} {quota.noun} running, the most an account may have; "
                "retry when one has ended",
                retry_after_s=max(1, min(int(soonest) + 1, self.settings.quota_retry_after_s)),
            )

    async def _ended(
        self, jobs: JobStatusRepository, quota: RunningQuota, claim: SlotClaim
    ) -> list[str]:
        """The slot holders whose jobs have ended, or whose rows are gone."""
        statuses = await jobs.statuses([holder.job for holder in claim.holders])
        ended: list[str] = []
        for holder in claim.holders:
            status = statuses.get(holder.job)
            if status is None:
                if holder.held_s >= ORPHAN_GRACE_S:
                    ended.append(holder.job)
            elif quota.phases(status).ended:
                ended.append(holder.job)
        return ended

    async def new_share(self, owner_id: uuid.UUID) -> None:
        """Count a new share (a repeated one is not counted); 429 over the quota."""
        decision = await self.limiter.hit(
            [
                Limit(
                    f"quota:shares:{owner_id}",
                    self.settings.quota_shares,
                    self.settings.quota_shares_window_s,
                )
            ]
        )
        if not decision.allowed:
            raise RateLimited(
                f"You have shared {self.settings.quota_shares} builds recently, the most an "
                "account may; retry later",
                retry_after_s=decision.retry_after_s,
            )
