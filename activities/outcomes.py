"""What the notify activities of both job kinds share."""

from __future__ import annotations

from temporalio import activity


def outcome_dedupe_key(kind: str) -> str:
    """The key of the notification announcing this workflow run's outcome: the same for every
    attempt of the activity (so a retry stores nothing twice), another for each run (a failed
    job asked for again runs again, and its new outcome is announced)."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{kind}"
